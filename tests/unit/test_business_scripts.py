"""A witnessing script per business (A17.4, A20–A22): the built-in scripts, the mapping
the runtime loads, an agency's overrides, and a broken file stopping the start."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.config import Config, ConfigError, MediaConfig, ServicesConfig
from server.content import DEFAULT_SCRIPT_PATH, builtin_script_path, load_script
from server.domain.business import HOLDER_SERVICES, BusinessType
from server.domain.errors import Conflict
from server.domain.script import FAIL_REASONS, Script, ScriptStep, progress_from, script_for
from server.services.pairing.queueing import required_skills
from server.services.runtime import load_witness_scripts

CANCEL_STEPS = [
    "identity",
    "own_account",
    "accounts",
    "settled",
    "consequences",
    "voluntary",
    "statement",
]


def config(**services: Any) -> Config:
    return replace(Config(), services=replace(ServicesConfig(), **services))


@pytest.mark.parametrize("kind", list(HOLDER_SERVICES))
def test_every_service_has_a_builtin_script(kind: BusinessType) -> None:
    path = builtin_script_path(kind.value)
    assert path.parent.name == "scripts" and path.is_file()
    script = load_script(path)
    # A21: the investor's identity first, as in an opening.
    assert script.steps[0].id == "identity"
    assert script.steps[0].text_zh == load_script().steps[0].text_zh
    assert all(s.text_zh and s.text_en for s in script.steps)
    assert kind.value.replace("_", "-") in script.version


def test_each_business_has_its_own_version() -> None:
    versions = [load_script(builtin_script_path(k.value)).version for k in BusinessType]
    assert len(set(versions)) == len(BusinessType)
    assert builtin_script_path("open") == DEFAULT_SCRIPT_PATH


def test_the_cancellation_script_asks_what_a_cancellation_needs() -> None:
    script = load_script(builtin_script_path("cancel"))
    assert [s.id for s in script.steps] == CANCEL_STEPS
    text = {s.id: s.text_zh + s.text_en for s in script.steps}
    assert "账户" in text["accounts"] and "desk" in text["accounts"]
    assert "卖出" in text["settled"] and "funds" in text["settled"]
    assert "settled" in text["settled"]
    for words in ("不能再进行证券交易", "重新申请开户", "指定交易", "custody"):
        assert words in text["consequences"]
    assert "意愿" in text["voluntary"]
    statement = script.steps[-1]
    assert statement.speaker == "investor" and "注销" in statement.text_zh


def test_the_runtime_loads_a_script_per_witnessed_business() -> None:
    scripts = load_witness_scripts(Config())
    assert set(scripts) == set(Config().services.offer.witnessed)
    assert scripts[BusinessType.OPEN].version == load_script().version
    assert [s.id for s in scripts[BusinessType.CANCEL].steps] == CANCEL_STEPS
    # A business not offered by video has no script to witness it with.
    only = load_witness_scripts(config(witnessed=("open", "cancel")))
    assert set(only) == {BusinessType.OPEN, BusinessType.CANCEL}


def test_the_opening_script_still_comes_from_media_script_file(tmp_path: Path) -> None:
    own = tmp_path / "open.toml"
    own.write_text(
        '[script]\nversion = "agency-open-9"\n'
        '[[script.steps]]\nid = "identity"\nspeaker = "witness"\ntext_zh = "请出示证件"\n',
        encoding="utf-8",
    )
    cfg = replace(Config(), media=replace(MediaConfig(), script_file=str(own)))
    assert load_witness_scripts(cfg)[BusinessType.OPEN].version == "agency-open-9"


def test_an_agency_file_replaces_only_its_business(tmp_path: Path) -> None:
    (tmp_path / "cancel.toml").write_text(
        '[script]\nversion = "agency-cancel-3"\n'
        '[[script.steps]]\nid = "identity"\nspeaker = "witness"\ntext_zh = "请出示证件"\n'
        '[[script.steps]]\nid = "statement"\nspeaker = "investor"\ntext_zh = "本人自愿注销"\n',
        encoding="utf-8",
    )
    scripts = load_witness_scripts(config(scripts_dir=str(tmp_path)))
    assert scripts[BusinessType.CANCEL].version == "agency-cancel-3"
    assert [s.id for s in scripts[BusinessType.CANCEL].steps] == ["identity", "statement"]
    builtin = load_script(builtin_script_path("query"))
    assert scripts[BusinessType.QUERY].version == builtin.version


def test_a_broken_service_script_stops_the_start(tmp_path: Path) -> None:
    broken = tmp_path / "reactivate.toml"
    broken.write_text(
        '[script]\nversion = "x"\n[[script.steps]]\nid = "identity"\nspeaker = "robot"\n'
        'text_zh = "请出示证件"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_witness_scripts(config(scripts_dir=str(tmp_path)))
    message = str(err.value)
    assert message.startswith("services.scripts_dir: ")
    assert str(broken) in message and "script.steps[0].speaker" in message
    broken.write_text("[script\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"reactivate\.toml: invalid TOML"):
        load_witness_scripts(config(scripts_dir=str(tmp_path)))
    broken.write_text("[other]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"reactivate\.toml: \[script\] is missing"):
        load_witness_scripts(config(scripts_dir=str(tmp_path)))


def test_a_scripts_dir_that_is_not_there_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^services\.scripts_dir: .*nowhere: not a directory"):
        load_witness_scripts(config(scripts_dir=str(tmp_path / "nowhere")))


def test_a_session_is_witnessed_with_its_business_script() -> None:
    opening = Script("o1", (ScriptStep("identity", "witness", "请出示证件"),))
    cancel = Script("c1", (ScriptStep("identity", "witness", "请出示证件"),
                           ScriptStep("accounts", "witness", "请确认账户")))  # fmt: skip
    scripts = {BusinessType.OPEN.value: opening, BusinessType.CANCEL.value: cancel}
    assert script_for(scripts, "cancel") is cancel
    assert script_for(scripts, BusinessType.OPEN) is opening
    with pytest.raises(Conflict) as err:
        script_for(scripts, "query")
    assert err.value.code == "no_script"
    # A mark names its step: one recorded against another script's step is not taken.
    events = [
        (0, "disclosure.shown", {}),
        (1, "disclosure.confirmed", {}),
        (2, "script.step_started", {"index": 1, "step": "accounts"}),
        (3, "script.step_marked", {"index": 1, "step": "accounts", "mark": "clear"}),
    ]
    assert progress_from(cancel, events).steps[1].mark == "clear"
    assert progress_from(cancel, [*events[:3], (3, "script.step_marked", {
        "index": 1, "step": "own_account", "mark": "clear"})]).steps[1].mark is None  # fmt: skip


def test_service_fail_reasons() -> None:
    for code in ("not_account_holder", "service_not_understood", "accounts_not_settled"):
        zh, en = FAIL_REASONS[code]
        assert zh and en


def test_a_service_needs_a_witness_with_its_skill() -> None:
    def app(business_type: str, document_type: str = "resident_id") -> Any:
        return SimpleNamespace(business_type=business_type, document_type=document_type)

    assert required_skills(app("open")) == frozenset()
    assert required_skills(app("cancel")) == {"svc:cancel"}
    assert required_skills(app("query", "hmt_residence_permit")) == {"hmt", "svc:query"}
