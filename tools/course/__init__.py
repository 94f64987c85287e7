"""The course tools: report and submit (students), handout, leaks and analyze (staff), and
what they share (regions). Entry points: tools/<name>.py."""
