"""Writes end_of_day.csv and end_of_day.xlsx: a realistic day of dispositions, a few rows wrong on purpose.

Run from the project folder: python sample_data/generate.py
"""

from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).parent
HEADER = ["Call ID", "Log ID", "Disposition", "Notes", "Agent", "Customer"]
ROWS = [
    ["4471001", 87278, "Interested", "Customer was interested in the premium plan and asked for a follow-up on Friday.", "Priya", "R. Sharma"],
    ["4471002", 87279, "Callback", "Asked to call back after 6 pm.", "Priya", "A. Khan"],
    ["4471003", 87280, "Not Interested", "Already has a policy with another provider.", "Rahul", "S. Iyer"],
    ["4471004", 87281, "Wrong Number", "", "Rahul", "—"],
    ["4471005", 87282, "DNC", "Requested to be added to the do-not-call list.", "Anita", "M. Das"],
    ["4471006", 87283, "Interested", "ग्राहक ने प्रीमियम योजना में रुचि दिखाई, कल फिर से कॉल करें।", "Anita", "के. वर्मा"],
    ["4471007", 87284, "Callback", "सोमवार सुबह 10 बजे कॉल बैक करें।", "Vikram", "P. Nair"],
    ["4471008", 87285, "No Answer", "Rang out twice.", "Vikram", "J. Thomas"],
    ["4471009", 87286, "Busy", "Line busy; try again tomorrow.", "Priya", "L. Fernandes"],
    ["4471010", 87287, "Interested", "Wants a quote by email, \"ASAP\"; confirmed address.", "Priya", "N. Gupta"],
    ["4471011", 87288, "Not Interested", "Price too high, maybe next quarter.", "Rahul", "D. Rao"],
    ["4471012", 87289, "Callback", "Spouse decides — call back Saturday.\nPrefers Hindi.", "Rahul", "V. Singh"],
    ["4471013", 87290, "Interested", "Very keen 👍 — send brochure.", "Anita", "H. Mehta"],
    ["4471014", 87291, "Wrong Number", "Number belongs to a shop.", "Anita", "—"],
    ["4471015", 87292, "DNC", "Asked not to be called again.", "Vikram", "T. Bose"],
    ["4471016", 87293, "Callback", "Call after payday (1st of the month).", "Vikram", "G. Pillai"],
    ["4471017", 87294, "Interested", "Booked a demo for Tuesday 3 pm.", "Priya", "F. Ali"],
    ["4471018", 87295, "No Answer", "", "Priya", "C. Joshi"],
    ["4471019", 87296, "Not Interested", "ग्राहक को अभी आवश्यकता नहीं है।", "Rahul", "बी. यादव"],
    ["4471020", 87297, "Interested", "Referred a friend, details in CRM.", "Rahul", "E. Kapoor"],
    ["4471021", 87298, "Callback", "Driving; call back in an hour.", "Anita", "I. Reddy"],
    ["4471022", 87299, "Busy", "", "Anita", "K. Chopra"],
    ["4471023", 87300, "Interested", "Upgrade from basic to family plan.", "Vikram", "O. Banerjee"],
    ["4471024", 87301, "Wrong Number", "Person not known at this number.", "Vikram", "—"],
    ["4471025", 87302, "Not Interested", "Happy with current service.", "Priya", "U. Menon"],
    ["4471026", 87303, "Callback", "Call back next week, Wednesday.", "Priya", "Y. Saxena"],
    ["4471027", 87304, "Interested", "Asked about EMI options; sent SMS with link.", "Rahul", "Z. Qureshi"],
    ["4471028", 87305, "DNC", "", "Rahul", "W. Dutta"],
    ["4471029", 87306, "No Answer", "Voicemail full.", "Anita", "Q. Sethi"],
    ["4471030", 87307, "Interested", "=HYPERLINK(\"http://example.com\") typed by the agent as a note", "Anita", "X. Lal"],
    ["4471093", 87308, "Interested", "Wants a call with a supervisor.", "Vikram", "R. Malhotra"],
    ["4471107", 87309, "Callback", "Call back after the festival.", "Vikram", "S. Kulkarni"],
    ["4471033", 87310, "Interested", "Confirmed interest; second call scheduled.", "Priya", "A. Bhatt"],
    ["4471034", 87311, "Not Interested", "Moving abroad.", "Priya", "M. Kaur"],
    # Wrong on purpose, so the demo shows what validation does:
    ["4471035", "87312.5", "Interested", "logID typed with a fraction.", "Rahul", "N. Shetty"],
    ["4471036", 87313, "", "Disposition left blank.", "Rahul", "P. Jain"],
    ["4471 037", 87314, "Callback", "A space inside the callID.", "Anita", "R. Ghosh"],
    ["4471002", 87315, "Interested", "Same callID as row 3.", "Anita", "A. Khan"],
    ["4471039", "abc", "Busy", "logID is not a number.", "Vikram", "D. Kumar"],
    ["4471040", 87317, "Callback", "Last call of the day.", "Vikram", "L. Paul"],
]


def main() -> None:
    import csv

    with open(HERE / "end_of_day.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(ROWS)
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Calls"
    sheet.append(HEADER)
    for row in ROWS:
        sheet.append(row)
        if isinstance(row[3], str) and row[3].startswith("="):
            sheet.cell(sheet.max_row, 4).data_type = "s"  # the note is text, not a formula
    for column, width in zip("ABCDEF", (12, 10, 16, 60, 10, 16)):
        sheet.column_dimensions[column].width = width
    workbook.save(HERE / "end_of_day.xlsx")


if __name__ == "__main__":
    main()
