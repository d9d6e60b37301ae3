"""`push-notification dovecot-config` output, pasted into a real Dovecot 2.3, makes it spool."""

from __future__ import annotations

import json

from click.testing import CliRunner
from e2e_support import require_dovecot, wait_until
from push_notification.dovecot.setup import dovecot_config
from push_notification.testing.dovecot import Dovecot
from push_notification.transaction import transaction_from_dict

require_dovecot()


def test_the_printed_snippet_makes_a_stock_config_feed_the_spool() -> None:
    dovecot = Dovecot(mail_plugins="")  # the snippet brings the plugins
    spool = dovecot.make_spool()
    result = CliRunner().invoke(
        dovecot_config,
        ["--version", "2.3", "--install-dir", str(dovecot.root / "share"), "--spool", str(spool)],
    )
    assert result.exit_code == 0, result.output
    dovecot.extra_config = result.stdout
    with dovecot:
        replies = dovecot.deliver("From: a@example.org\r\nSubject: configured\r\n\r\nbody\r\n")
        assert wait_until(lambda: len(list((spool / "new").iterdir())) >= 2)
        files = sorted((spool / "new").iterdir(), key=lambda p: p.stat().st_mtime_ns)
        txns = [transaction_from_dict(json.loads(p.read_text())) for p in files]
        errors = dovecot.log_errors()
    assert [code for code, _ in replies] == [250]
    assert [t.events[0].name for t in txns] == ["MailboxCreate", "MessageNew"]
    assert errors == []
