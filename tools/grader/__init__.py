"""The autograder (staff only; docs/grading.md). Entry point: tools/autograde.py."""
