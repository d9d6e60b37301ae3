"""The testing kit: for driver authors (``kit.py``: build events and transactions, run a
driver behind the real dispatcher) and for this project's own tests (``daemon.py``: the daemon
as a subprocess; ``dovecot.py`` and ``dovecot24.py``: a real Dovecot). ``pytest_plugin.py``
adds fixtures when pytest runs; nothing else here imports pytest.

    from push_notification.testing import DriverHarness, make_event, make_transaction
"""

from push_notification.testing.kit import DriverHarness, make_event, make_transaction, run_transactions

__all__ = ["DriverHarness", "make_event", "make_transaction", "run_transactions"]
