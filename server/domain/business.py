"""Business types and the methods they are offered by (A20, A21, A22). Pure.

Every application, and so every session, recording and evidence package, is for one
business: opening an account (``open``) or one of the account services an existing
holder asks for. Which services the agency offers, and by which method, is
configuration (``[services]``), checked here:

- A22: an agency that opens accounts by witnessed video must offer cancellation by
  witnessed video too (at least the method the account was opened by);
- an online (non-video) service is only for accounts that were opened online: an
  account opened under a witness is not closed with less.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from server.domain.errors import Conflict, Forbidden, InvalidInput
from server.domain.field_labels import label_en, label_zh


class BusinessType(StrEnum):
    OPEN = "open"
    CANCEL = "cancel"
    CHANGE_INFO = "change_info"
    REACTIVATE = "reactivate"
    QUERY = "query"
    LIFT_LOSS_REPORT = "lift_loss_report"
    TRANSFER_RELATIONSHIP = "transfer_relationship"
    BEIJING_MARK = "beijing_mark"


class ServiceMethod(StrEnum):
    WITNESSED = "witnessed"  # two-way video, a witness on the call
    ONLINE = "online"  # no video: identity check and OTP only


# (zh, en) as investors and staff read them.
LABELS: dict[BusinessType, tuple[str, str]] = {
    BusinessType.OPEN: ("开立证券账户", "Open a securities account"),
    BusinessType.CANCEL: ("注销证券账户", "Cancel a securities account"),
    BusinessType.CHANGE_INFO: ("变更账户信息", "Change account information"),
    BusinessType.REACTIVATE: ("休眠账户激活", "Reactivate a dormant account"),
    BusinessType.QUERY: ("账户查询", "Account query"),
    BusinessType.LIFT_LOSS_REPORT: ("账户解挂", "Lift a loss report"),
    BusinessType.TRANSFER_RELATIONSHIP: (
        "使用信息/关联关系转移",
        "Transfer the associated relationship",
    ),
    BusinessType.BEIJING_MARK: ("北交所权限标识加挂/撤销", "Add or remove the Beijing-market mark"),
}

HOLDER_SERVICES = tuple(t for t in BusinessType if t is not BusinessType.OPEN)

# How an account was opened (the account system's word) → the remote methods that may
# serve it. A22 sets the floor: the opening method itself. Video serves any account.
OPENED_BY: dict[str, frozenset[ServiceMethod]] = {
    "two_way_video_witnessing": frozenset({ServiceMethod.WITNESSED}),
    "one_way_video": frozenset({ServiceMethod.WITNESSED}),
    "online": frozenset({ServiceMethod.ONLINE, ServiceMethod.WITNESSED}),
    "counter": frozenset({ServiceMethod.WITNESSED}),
}

# The services that change an account at the account system (a query changes nothing).
CHANGES_ACCOUNTS = frozenset(HOLDER_SERVICES) - {BusinessType.QUERY}


def label(kind: BusinessType | str) -> tuple[str, str]:
    return LABELS[BusinessType(kind)]


@dataclass(frozen=True)
class ServiceOffer:
    """What ``[services]`` allows: types by method, and which need a callback first."""

    witnessed: frozenset[BusinessType]
    online: frozenset[BusinessType]
    callback: frozenset[BusinessType]

    def methods(self, kind: BusinessType) -> tuple[ServiceMethod, ...]:
        out = []
        if kind in self.witnessed:
            out.append(ServiceMethod.WITNESSED)
        if kind in self.online:
            out.append(ServiceMethod.ONLINE)
        return tuple(out)

    def offered(self) -> tuple[BusinessType, ...]:
        return tuple(t for t in BusinessType if self.methods(t))

    def needs_callback(self, kind: BusinessType) -> bool:
        # A8, A17.6: an opening always has its callback; services where configured.
        return kind is BusinessType.OPEN or kind in self.callback

    def check(self, kind: str, method: ServiceMethod) -> BusinessType:
        """The business type asked for, if offered by that method; else a bilingual 403."""
        try:
            business = BusinessType(kind)
        except ValueError:
            business = None
        if business is None or method not in self.methods(business):
            raise Forbidden(
                "service_not_offered",
                "This service is not offered here by this method.",
                "本机构不通过此方式办理该业务。",
                details={"business_type": str(kind)[:40], "method": method.value},
            )
        return business


def check_accounts_method(opened_methods: Iterable[str], method: ServiceMethod) -> None:
    """A22: each account named must allow ``method`` given how it was opened."""
    for opened in opened_methods:
        if method not in OPENED_BY.get(opened, frozenset({ServiceMethod.WITNESSED})):
            raise Conflict(
                "method_not_allowed",
                "An account opened by video must be served by video: join the video "
                "witnessing instead.",
                "通过视频见证开立的账户须以视频见证方式办理，请改用视频见证。",
                details={"opened_by": opened, "method": method.value},
            )


def parse_offer(
    *, witnessed: Iterable[str], online: Iterable[str], callback: Iterable[str]
) -> ServiceOffer:
    """``[services]``; ValueError names the key at fault."""

    def kinds(key: str, values: Iterable[str]) -> frozenset[BusinessType]:
        out = set()
        for value in values:
            try:
                out.add(BusinessType(value))
            except ValueError:
                known = ", ".join(t.value for t in BusinessType)
                raise ValueError(
                    f"services.{key}: unknown business type {value!r} ({known})"
                ) from None
        return frozenset(out)

    offer = ServiceOffer(
        witnessed=kinds("witnessed", witnessed),
        online=kinds("online", online),
        callback=kinds("callback", callback),
    )
    if BusinessType.OPEN in offer.online:
        raise ValueError("services.online: opening needs a witness here (A17); remove 'open'")
    if BusinessType.OPEN in offer.witnessed and BusinessType.CANCEL not in offer.witnessed:
        # A22: remote cancellation at least by the method accounts are opened by.
        raise ValueError(
            "services.witnessed: accounts are opened by witnessed video, so 'cancel' must "
            "be offered by witnessed video too (A22)"
        )
    return offer


# The account system's reasons for refusing a service (server/adapters/account_system.py),
# as the investor and the witness read them: (zh, en).
REFUSALS: dict[str, tuple[str, str]] = {
    "holdings_remain": (
        "账户内仍有证券持仓，请先卖出或转出后再办理。",
        "The account still holds securities: sell or transfer them first.",
    ),
    "unsettled_trades": (
        "账户有未了结的交易或资金，请待交收完成后再办理。",
        "The account has unsettled trades or funds: wait until settlement is complete.",
    ),
    "designated_trading": (
        "账户存在指定交易或托管关系，请先撤销后再办理。",
        "The account has a designated-trading or custody relationship: revoke it first.",
    ),
    "sub_accounts_open": (
        "一码通账户下仍有未注销的证券账户，请一并注销。",
        "Securities accounts under the unified account are still open: cancel them too.",
    ),
    "already_cancelled": ("该账户已注销。", "The account has already been cancelled."),
    "not_dormant": ("该账户不是休眠账户，无需激活。", "The account is not dormant."),
    "not_loss_reported": ("该账户未挂失，无需解挂。", "The account has no loss report to lift."),
    "already_marked": (
        "该账户已有北交所权限标识。",
        "The account already has the Beijing-market mark.",
    ),
    "not_marked": ("该账户没有北交所权限标识。", "The account has no Beijing-market mark."),
    "not_holder": (
        "账户与身份信息不符。",
        "The account does not belong to this identity.",
    ),
    "unavailable": (
        "账户系统暂时无法办理，请稍后再试。",
        "The account system is unavailable; try again later.",
    ),
    "rejected": ("账户系统拒绝了该业务。", "The account system refused the request."),
    "bad_response": (
        "账户系统应答异常，请稍后再试。",
        "The account system gave an unusable answer; try again later.",
    ),
}


def refusal(code: str | None) -> tuple[str, str]:
    return REFUSALS.get(code or "rejected", REFUSALS["rejected"])


# What a holder may ask to change, per business type (A20); values are checked for size
# only: the account system is the authority on what it accepts.
_DETAIL_KEYS: dict[BusinessType, frozenset[str]] = {
    BusinessType.CHANGE_INFO: frozenset({"phone", "address", "email", "occupation"}),
    BusinessType.TRANSFER_RELATIONSHIP: frozenset({"to_agency"}),
    BusinessType.BEIJING_MARK: frozenset({"action"}),
}
_REQUIRED_KEYS: dict[BusinessType, frozenset[str]] = {
    BusinessType.TRANSFER_RELATIONSHIP: frozenset({"to_agency"}),
    BusinessType.BEIJING_MARK: frozenset({"action"}),
}


def check_details(kind: BusinessType, details: dict[str, str] | None) -> dict[str, str]:
    """The details a service needs, cleaned; a bilingual 400 naming the field as the
    page labels it (field_labels.py) otherwise."""
    given = {k: (v or "").strip() for k, v in (details or {}).items()}
    allowed = _DETAIL_KEYS.get(kind, frozenset())
    for key, value in given.items():
        if key not in allowed:
            raise InvalidInput(
                "service_detail_unknown",
                f"'{key[:40]}' cannot be given for this service.",
                f"该业务不接受“{key[:40]}”。",
                details={"field": f"details.{key[:40]}"},
            )
        field = f"details.{key}"
        if not value or len(value) > 200:
            raise InvalidInput(
                "service_detail_invalid",
                f"Fill in '{label_en(field)}' (at most 200 characters).",
                f"请填写“{label_zh(field)}”（不超过200个字符）。",
                details={"field": field},
            )
    missing = sorted(_REQUIRED_KEYS.get(kind, frozenset()) - given.keys())
    if kind is BusinessType.CHANGE_INFO and not given:
        raise InvalidInput(
            "service_detail_missing",
            f"Fill in at least one item of '{label_en('details')}'.",
            f"请至少填写一项“{label_zh('details')}”。",
            details={"field": "details"},
        )
    if missing:
        field = f"details.{missing[0]}"
        raise InvalidInput(
            "service_detail_missing",
            f"Fill in '{label_en(field)}'.",
            f"请填写“{label_zh(field)}”。",
            details={"field": field},
        )
    if kind is BusinessType.BEIJING_MARK and given["action"] not in ("add", "remove"):
        raise InvalidInput(
            "service_detail_invalid",
            f"'{label_en('details.action')}': choose add or remove.",
            f"“{label_zh('details.action')}”请选择加挂或撤销。",
            details={"field": "details.action"},
        )
    return given
