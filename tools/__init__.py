"""Course tools around the kit: handout, analyze, report, submit, autograde (see README)."""
