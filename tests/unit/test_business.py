"""A20–A22: business types, the methods they are offered by, and what a holder may ask."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_config
from server.domain.application import (
    TERMINAL,
    ApplicationEvent,
    ApplicationState,
    IllegalTransition,
    transition,
)
from server.domain.business import (
    HOLDER_SERVICES,
    LABELS,
    OPENED_BY,
    REFUSALS,
    BusinessType,
    ServiceMethod,
    check_accounts_method,
    check_details,
    parse_offer,
    refusal,
)
from server.domain.errors import Conflict, Forbidden, InvalidInput
from server.domain.intake import IntakeProgress, IntakeStep, missing_before_check, next_step

ALL = [t.value for t in BusinessType]


def test_every_type_has_labels_in_both_languages() -> None:
    assert set(LABELS) == set(BusinessType)
    for zh, en in LABELS.values():
        assert zh and en and zh != en
    assert BusinessType.OPEN not in HOLDER_SERVICES and len(HOLDER_SERVICES) == 7


def test_a22_cancellation_must_be_offered_as_opening_is() -> None:
    with pytest.raises(ValueError, match="'cancel' must be offered by witnessed video"):
        parse_offer(witnessed=["open", "query"], online=["cancel"], callback=[])
    # An agency that does not open accounts by video here has no such duty.
    offer = parse_offer(witnessed=["query"], online=["cancel"], callback=[])
    assert offer.methods(BusinessType.CANCEL) == (ServiceMethod.ONLINE,)


def test_offer_refuses_unknown_types_and_online_opening() -> None:
    with pytest.raises(ValueError, match=r"services\.callback: unknown business type 'close'"):
        parse_offer(witnessed=ALL, online=[], callback=["close"])
    with pytest.raises(ValueError, match="opening needs a witness"):
        parse_offer(witnessed=ALL, online=["open"], callback=[])


def test_config_file_with_a22_violation_stops_the_start(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[services]\nwitnessed = ["open", "query"]\n')
    with pytest.raises(ConfigError, match="A22"):
        load_config(f, env={})
    f.write_text('[services]\nonline = ["cancel", "fly"]\n')
    with pytest.raises(ConfigError, match="unknown business type 'fly'"):
        load_config(f, env={})


def test_offer_check_names_what_is_not_offered() -> None:
    offer = parse_offer(witnessed=["open", "cancel", "query"], online=["cancel"], callback=[])
    assert offer.check("cancel", ServiceMethod.ONLINE) is BusinessType.CANCEL
    for kind, method in (
        ("query", ServiceMethod.ONLINE),
        ("reactivate", ServiceMethod.WITNESSED),
        ("nonsense", ServiceMethod.WITNESSED),
    ):
        with pytest.raises(Forbidden) as err:
            offer.check(kind, method)
        assert err.value.code == "service_not_offered"
    assert offer.needs_callback(BusinessType.OPEN)  # A8: always
    assert not offer.needs_callback(BusinessType.QUERY)


def test_a22_accounts_opened_by_video_are_served_by_video() -> None:
    check_accounts_method(["two_way_video_witnessing", "online"], ServiceMethod.WITNESSED)
    check_accounts_method(["online"], ServiceMethod.ONLINE)
    for opened in ("two_way_video_witnessing", "one_way_video", "counter", "unknown"):
        with pytest.raises(Conflict) as err:
            check_accounts_method(["online", opened], ServiceMethod.ONLINE)
        assert err.value.code == "method_not_allowed"
    assert all(ServiceMethod.WITNESSED in methods for methods in OPENED_BY.values())


@pytest.mark.parametrize(
    ("kind", "details", "code"),
    [
        (BusinessType.CANCEL, {"phone": "1"}, "service_detail_unknown"),
        (BusinessType.CHANGE_INFO, {}, "service_detail_missing"),
        (BusinessType.CHANGE_INFO, {"address": "  "}, "service_detail_invalid"),
        (BusinessType.CHANGE_INFO, {"address": "x" * 201}, "service_detail_invalid"),
        (BusinessType.TRANSFER_RELATIONSHIP, {}, "service_detail_missing"),
        (BusinessType.BEIJING_MARK, {"action": "toggle"}, "service_detail_invalid"),
    ],
)
def test_details_refused_with_the_field(
    kind: BusinessType, details: dict[str, str], code: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        check_details(kind, details)
    assert err.value.code == code and err.value.details["field"].startswith("details")
    # Named as the page labels it, never by the internal key (issue 17).
    assert "'address'" not in err.value.message and "“address”" not in err.value.message_zh


def test_details_cleaned() -> None:
    assert check_details(BusinessType.CANCEL, None) == {}
    assert check_details(BusinessType.CHANGE_INFO, {"address": " 上海 "}) == {"address": "上海"}
    assert check_details(BusinessType.BEIJING_MARK, {"action": "add"}) == {"action": "add"}


def test_refusals_in_both_languages_with_a_fallback() -> None:
    for zh, en in REFUSALS.values():
        assert zh and en
    assert refusal("holdings_remain")[1].startswith("The account still holds")
    assert refusal("something new") == REFUSALS["rejected"]


def test_services_skip_the_opening_questionnaire_and_disclosure() -> None:
    done = IntakeProgress(
        state=ApplicationState.DRAFT,
        identity=True,
        id_front=True,
        id_back=True,
        frontal_photo=True,
        suitability=False,
        disclosure=False,
        business_type="cancel",
    )
    assert next_step(done) is IntakeStep.CHECK and missing_before_check(done) == []
    opening = IntakeProgress(**{**done.__dict__, "business_type": "open"})
    assert next_step(opening) is IntakeStep.SUITABILITY
    assert missing_before_check(opening) == ["suitability", "disclosure"]


def test_service_states() -> None:
    s, e = ApplicationState, ApplicationEvent
    assert transition(s.APPROVED, e.SERVICE_DONE) is s.COMPLETED
    assert transition(s.CALLBACK_CONFIRMED, e.SERVICE_DECLINED) is s.SERVICE_REFUSED
    assert transition(s.IDENTITY_VERIFIED, e.CONFIRM_ONLINE) is s.APPROVED
    assert {s.COMPLETED, s.SERVICE_REFUSED} <= TERMINAL
    with pytest.raises(IllegalTransition):
        transition(s.COMPLETED, e.SERVICE_DONE)
    with pytest.raises(IllegalTransition):
        transition(s.QUEUED, e.CONFIRM_ONLINE)
