"""The USPS digits: fetching, checking and splitting them (see usps.py)."""
