"""Alert rules, their evaluation and the alert lifecycle (see docs/alerts.md).

    rules.py    what each rule looks at, its parameters and message (pure functions)
    store.py    the alerts table: raise (one open alert per device + rule), auto-clear,
                acknowledge, clear
    engine.py   evaluates committed readings against the rules and applies the results

Errors: `AlertStateError` (an acknowledge or clear that the alert's state does not allow) and
`AlertNotFoundError`; database errors propagate as `psycopg.Error`.
"""
