"""Every adapter kind the server has, for config validation to check in one pass.

Adding an outside service: declare its ``AdapterKind`` beside its implementations
(see server/adapters/kinds.py), list it here, and build it in server/services/runtime.py
with ``build(KIND, config.<section>, context)``.
"""

from __future__ import annotations

from typing import Any

from server.adapters.account_system import ACCOUNTS
from server.adapters.email import EMAIL
from server.adapters.identity_registry import IDENTITY
from server.adapters.kinds import AdapterKind
from server.adapters.screening import SCREENING
from server.adapters.sms import SMS

# Checked in this order, so the first problem reported is stable.
ADAPTER_KINDS: tuple[AdapterKind[Any, Any], ...] = (EMAIL, ACCOUNTS, IDENTITY, SMS, SCREENING)


def adapter_problem(config: object) -> str | None:
    """The first adapter section of ``config`` (server.config.Config) that cannot build,
    as a message naming its key; None when every one can."""
    for kind in ADAPTER_KINDS:
        problem = kind.problem(getattr(config, kind.section))
        if problem is not None:
            return problem
    return None
