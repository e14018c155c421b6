"""Routing's use cases: each loads through the store, lets the domain decide, builds the step's events
(`domain.case_events`) and stores the case with them. Views, event handlers and the deadline watch call these.

    cases.py    routing reports into cases, a command on a case, merging two cases
"""
