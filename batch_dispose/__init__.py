"""batch-dispose: apply a day's call dispositions to the Ryng dialer from a spreadsheet."""

__version__ = "0.1.0"
