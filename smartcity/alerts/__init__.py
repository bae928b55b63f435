"""Alert rules, their evaluation and the alert lifecycle (see docs/alerts.md).

    rules.py    what each rule looks at, its parameters and message (pure functions)
    store.py    the alerts table as the rules write it: raise (one open alert per device +
                rule), auto-clear after a hold-off
    engine.py   evaluates committed readings against the rules and applies the results

Reading, acknowledging and clearing alerts (the API's side) is `smartcity.queries.alerts`.
Database errors propagate as `psycopg.Error`.
"""
