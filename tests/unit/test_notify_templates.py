"""The notices' templates: every kind in every language, the facts each must carry, and a city's own files
(which replace the shipped ones one by one, and are checked at start rather than failing in a notice)."""
from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from services.notify.templates import (
    KINDS,
    LANGUAGES,
    SAMPLE_CONTEXTS,
    SHIPPED_DIR,
    Rendered,
    TemplateError,
    Templates,
    format_hours,
)

SHIPPED = Templates()


def sample(kind: str, **changes) -> dict:
    return {**SAMPLE_CONTEXTS[kind], **changes}


def city_file(folder: Path, language: str, kind: str, text: str) -> Path:
    path = folder / language / f"{kind}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def items(count: int) -> list[dict]:
    return [{"report_id": f"r{n:03d}", "category_name": "车辆乱停乱放", "submitted_at": "2026-11-24 16:40",
             "status_name": "处理中"} for n in range(count)]


# --- the shipped templates ------------------------------------------------------------------------

def test_there_is_a_sample_and_a_shipped_file_for_every_kind_in_every_language_and_nothing_else():
    assert len(KINDS) == 15 and set(SAMPLE_CONTEXTS) == set(KINDS)
    shipped = {path.relative_to(SHIPPED_DIR) for path in SHIPPED_DIR.rglob("*.txt")}
    assert shipped == {Path(language, f"{kind}.txt") for language in LANGUAGES for kind in KINDS}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_a_one_line_title_and_a_body_ending_with_the_link(kind, language):
    context = SAMPLE_CONTEXTS[kind]
    rendered = SHIPPED.render(kind, language, context)

    assert isinstance(rendered, Rendered)
    assert rendered.title.strip() and "\n" not in rendered.title and len(rendered.title) <= 120
    assert rendered.link == context["link"]
    assert rendered.body.splitlines()[-1].endswith(context["link"])
    assert "None" not in rendered.title + rendered.body
    assert "\n\n\n" not in rendered.body


@pytest.mark.parametrize("kind", KINDS)
def test_english_is_not_the_chinese_text(kind):
    zh = SHIPPED.render(kind, "zh", SAMPLE_CONTEXTS[kind])
    en = SHIPPED.render(kind, "en", SAMPLE_CONTEXTS[kind])

    assert zh.title != en.title and zh.body != en.body
    if kind == "email.confirmation":
        assert en.body.splitlines()[-1].startswith("Notification settings:")
        assert zh.body.splitlines()[-1].startswith("通知设置：")
    else:
        assert en.body.splitlines()[-1].startswith("Details:") and zh.body.splitlines()[-1].startswith("查看详情：")


def test_the_shipped_templates_pass_the_start_check():
    SHIPPED.check()


def test_a_dispatched_report_names_the_department_and_the_deadline():
    context = sample("report.dispatched", department_name="城市管理局", due_at="2026-11-27 17:00")
    for language in LANGUAGES:
        rendered = SHIPPED.render("report.dispatched", language, context)
        assert "城市管理局" in rendered.title and "2026-11-27 17:00" in rendered.body


def test_a_dispatched_report_without_a_deadline_says_nothing_of_one():
    zh = SHIPPED.render("report.dispatched", "zh", sample("report.dispatched", due_at=None))
    en = SHIPPED.render("report.dispatched", "en", sample("report.dispatched", due_at=None))

    assert "整改时限" not in zh.body and "None" not in zh.body
    assert "dealt with by" not in en.body and "None" not in en.body


def test_text_is_plain_not_html_escaped():
    rendered = SHIPPED.render("case.event", "zh", sample("case.event", description='<b>"A&B"</b>'))

    assert '<b>"A&B"</b>' in rendered.body


@pytest.mark.parametrize(("reason", "zh", "en"), [
    ("duplicate", "重复上报", "duplicates an earlier report"),
    ("invalid", "不属实或无效", "could not be confirmed or is not valid"),
    ("out_of_scope", "不属于受理范围", "outside the scope of the programme"),
])
def test_a_rejection_gives_its_reason_in_words(reason, zh, en):
    context = sample("report.rejected", reason=reason)

    assert zh in SHIPPED.render("report.rejected", "zh", context).body
    assert en in SHIPPED.render("report.rejected", "en", context).body
    assert reason not in SHIPPED.render("report.rejected", "zh", context).body


@pytest.mark.parametrize(("status", "zh", "en"), [
    ("pending_triage", "待分类派遣", "waiting to be assigned"),
    ("accepted", "责任部门处理中", "being handled by the responsible department"),
    ("rectified", "已整改，待核查", "fixed, waiting to be checked"),
])
def test_a_joined_report_gives_the_case_status_in_words(status, zh, en):
    context = sample("report.joined", status=status)

    assert zh in SHIPPED.render("report.joined", "zh", context).body
    assert en in SHIPPED.render("report.joined", "en", context).body


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_case_action_has_its_own_title_in_words(language):
    actions = ("dispatched", "accepted", "disputed", "rectified", "closed", "reopened", "rejected", "overdue",
               "extension_requested", "extension_decided", "opened")
    titles = {SHIPPED.render("case.event", language, sample("case.event", action=action)).title
              for action in actions}

    assert len(titles) == len(actions)
    assert not any(action in title for title in titles for action in actions if "_" in action)


def test_a_case_event_for_an_escalated_overdue_case_says_so():
    context = sample("case.event", action="overdue", overdue=True, escalation_level=2)

    assert "（已逾期）" in SHIPPED.render("case.event", "zh", context).body
    assert "第 2 级" in SHIPPED.render("case.event", "zh", context).body
    assert "(overdue)" in SHIPPED.render("case.event", "en", context).body
    assert "Escalation level: 2" in SHIPPED.render("case.event", "en", context).body


def test_an_overdue_notice_to_the_office_gives_the_escalation_level():
    context = sample("office.overdue", escalation_level=3)

    assert "第 3 级督办" in SHIPPED.render("office.overdue", "zh", context).title
    assert "level 3" in SHIPPED.render("office.overdue", "en", context).title


def test_a_level_change_gives_the_star_level_and_tells_up_from_down():
    up = sample("volunteer.level_changed", star_level=3, previous_level=2, total_hours=600)
    down = sample("volunteer.level_changed", star_level=2, previous_level=3, total_hours=598.5)

    assert "三星级" in SHIPPED.render("volunteer.level_changed", "zh", up).title
    assert "3-star" in SHIPPED.render("volunteer.level_changed", "en", up).title
    assert "恭喜" in SHIPPED.render("volunteer.level_changed", "zh", up).title
    assert "恭喜" not in SHIPPED.render("volunteer.level_changed", "zh", down).title
    assert "二星级" in SHIPPED.render("volunteer.level_changed", "zh", down).title
    assert "598.5" in SHIPPED.render("volunteer.level_changed", "en", down).body


@pytest.mark.parametrize(("hours", "printed"), [(2, "2"), (2.0, "2"), (2.5, "2.5"), (2.25, "2.3"), (1500, "1500"),
                                               (-1.5, "-1.5"), (-0.04, "0"), (0.333333, "0.3")])
def test_hours_are_printed_with_at_most_one_decimal_and_no_trailing_zero(hours, printed):
    assert format_hours(hours) == printed


@pytest.mark.parametrize(("hours", "zh", "en"), [(2, "2 小时", "2 service hours"),
                                                 (2.5, "2.5 小时", "2.5 service hours"),
                                                 (1, "1 小时", "1 service hour")])
def test_credited_hours_use_the_hours_format(hours, zh, en):
    context = sample("hours.credited", hours=hours)
    zh_text = SHIPPED.render("hours.credited", "zh", context)
    en_text = SHIPPED.render("hours.credited", "en", context)

    assert zh in zh_text.title and zh in zh_text.body and ".0" not in zh_text.body
    assert en in en_text.title and en in en_text.body and "1 service hours" not in en_text.body


def test_reversed_hours_are_printed_without_their_sign_and_with_the_reason():
    rendered = SHIPPED.render("hours.reversed", "zh", sample("hours.reversed", hours=-2, note="重复登记"))

    assert "冲减 2 小时" in rendered.title and "-2 小时" not in rendered.body and "重复登记" in rendered.body


def test_the_minimum_reminder_gives_the_hours_short():
    context = sample("volunteer.minimum_at_risk", year_hours=12, minimum_hours=20, hours_short=8)

    assert "8 小时" in SHIPPED.render("volunteer.minimum_at_risk", "zh", context).title
    assert "8 more service hours" in SHIPPED.render("volunteer.minimum_at_risk", "en", context).title


def test_the_digest_lists_twenty_items_and_says_how_many_more():
    context = sample("grid.digest", open_items=items(25), overdue_items=items(20))
    zh = SHIPPED.render("grid.digest", "zh", context).body
    en = SHIPPED.render("grid.digest", "en", context).body

    assert "r019" in en and "r020" not in en and "r024" not in en
    assert "and 5 more" in en and en.count("more") == 1
    assert "另有 5 条" in zh and zh.count("另有") == 1


def test_an_empty_digest_says_so():
    context = sample("grid.digest", new=0, open=0, overdue=0, open_items=[], overdue_items=[])

    assert SHIPPED.render("grid.digest", "zh", context).body.count("暂无") == 2
    assert SHIPPED.render("grid.digest", "en", context).body.count("None") == 2


# --- languages and kinds --------------------------------------------------------------------------

@pytest.mark.parametrize("language", ["fr", "", "zh-CN", "ZH"])
def test_a_language_not_offered_falls_back_to_chinese(language):
    assert SHIPPED.render("report.closed", language, SAMPLE_CONTEXTS["report.closed"]) == \
        SHIPPED.render("report.closed", "zh", SAMPLE_CONTEXTS["report.closed"])


@pytest.mark.parametrize("language", ["EN", "en-US", "en_GB"])
def test_a_regional_english_is_english(language):
    assert SHIPPED.render("report.closed", language, SAMPLE_CONTEXTS["report.closed"]) == \
        SHIPPED.render("report.closed", "en", SAMPLE_CONTEXTS["report.closed"])


def test_an_unknown_kind_is_a_key_error():
    with pytest.raises(KeyError):
        SHIPPED.render("report.vanished", "zh", {"link": "x"})


def test_a_context_missing_a_variable_fails_naming_the_file():
    context = sample("report.closed")
    del context["category_name"]

    with pytest.raises(TemplateError, match=r"zh[/\\]report\.closed\.txt.*category_name") as failure:
        SHIPPED.render("report.closed", "zh", context)
    assert isinstance(failure.value.__cause__, UndefinedError)


# --- a city's own files ---------------------------------------------------------------------------

def test_a_city_file_replaces_its_kind_in_its_language_only(tmp_path):
    city_file(tmp_path, "zh", "report.closed", "{{ category_name }}已办结\n\n谢谢！\n{{ link }}\n")
    city = Templates(tmp_path)

    link = SAMPLE_CONTEXTS["report.closed"]["link"]
    closed = city.render("report.closed", "zh", SAMPLE_CONTEXTS["report.closed"])
    assert closed == Rendered(title="环境脏乱差、暴露垃圾已办结", body=f"谢谢！\n{link}", link=link)
    assert city.render("report.closed", "en", SAMPLE_CONTEXTS["report.closed"]) == \
        SHIPPED.render("report.closed", "en", SAMPLE_CONTEXTS["report.closed"])
    assert city.render("report.rectified", "zh", SAMPLE_CONTEXTS["report.rectified"]) == \
        SHIPPED.render("report.rectified", "zh", SAMPLE_CONTEXTS["report.rectified"])
    city.check()


def test_a_city_file_with_a_misspelt_variable_fails_the_check_naming_the_file(tmp_path):
    path = city_file(tmp_path, "en", "report.dispatched", "Sent to {{ departmnt_name }}\n\n{{ link }}\n")

    with pytest.raises(TemplateError, match="departmnt_name") as failure:
        Templates(tmp_path).check()
    assert str(path) in str(failure.value) and "line 1" in str(failure.value)


def test_a_misspelt_variable_in_a_branch_the_sample_does_not_take_still_fails_the_check(tmp_path):
    path = city_file(tmp_path, "zh", "report.rejected",
                     "未予受理\n\n{% if reason == 'duplicate' %}\n{{ duplicate_of }}\n{% endif %}\n{{ link }}\n")
    assert SAMPLE_CONTEXTS["report.rejected"]["reason"] != "duplicate"

    with pytest.raises(TemplateError, match="duplicate_of") as failure:
        Templates(tmp_path).check()
    assert str(path) in str(failure.value) and "line 4" in str(failure.value)


def test_a_city_file_with_a_syntax_error_fails_the_check_naming_the_file_and_line(tmp_path):
    path = city_file(tmp_path, "zh", "hours.credited", "获得时长\n\n{% if note %}\n{{ note }}\n{{ link }}\n")

    with pytest.raises(TemplateError) as failure:
        Templates(tmp_path).check()
    assert str(path) in str(failure.value) and "line" in str(failure.value)


def test_a_city_file_not_in_utf8_fails_the_check_naming_the_file(tmp_path):
    path = tmp_path / "zh" / "report.closed.txt"
    path.parent.mkdir()
    path.write_bytes("已办结\n\n{{ link }}\n".encode("gbk"))

    with pytest.raises(TemplateError, match="UnicodeDecodeError") as failure:
        Templates(tmp_path).check()
    assert str(path) in str(failure.value)


@pytest.mark.parametrize(("kind", "escape"), [
    ("report.closed", "{{ ''.__class__.__mro__ }}"),
    ("report.closed", "{{ cycler.__init__.__globals__ }}"),
    ("report.closed", "{{ '{0.__class__.__mro__}'.format(link) }}"),
    ("report.closed", "{{ lipsum.__globals__ }}"),
    ("grid.digest", "{{ open_items.append(1) }}"),
    ("grid.digest", "{{ open_items[0].update(status_name='x') }}"),
])
def test_a_city_file_cannot_reach_python_internals_or_change_what_it_is_given(tmp_path, kind, escape):
    city_file(tmp_path, "zh", kind, f"标题\n\n{escape}\n{{{{ link }}}}\n")
    context = sample(kind)
    before = repr(context)

    with pytest.raises(TemplateError) as failure:
        Templates(tmp_path).render(kind, "zh", context)
    assert isinstance(failure.value.__cause__, SecurityError)
    with pytest.raises(TemplateError):
        Templates(tmp_path).check()
    assert repr(context) == before


def test_a_city_file_named_for_no_kind_fails_the_check(tmp_path):
    path = city_file(tmp_path, "zh", "report.dispached", "标题\n\n{{ link }}\n")

    with pytest.raises(TemplateError, match="replaces no template") as failure:
        Templates(tmp_path).check()
    assert str(path) in str(failure.value)


def test_a_city_folder_that_does_not_exist_fails_the_check(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        Templates(tmp_path / "missing").check()


@pytest.mark.parametrize("text", ["\n\n\n{{ link }}\n", "{{ note }}\n\n{{ link }}\n", "只有标题\n"])
def test_a_city_file_with_no_title_or_no_body_fails(tmp_path, text):
    city_file(tmp_path, "zh", "report.closed", text)

    with pytest.raises(TemplateError, match=r"report\.closed\.txt"):
        Templates(tmp_path).render("report.closed", "zh", sample("report.closed", note=""))


def test_a_long_title_is_trimmed_to_120_characters_and_a_short_one_is_not(tmp_path):
    city_file(tmp_path, "zh", "report.closed", "{{ note }}\n\n{{ link }}\n")
    city = Templates(tmp_path)

    long = city.render("report.closed", "zh", sample("report.closed", note="很" * 200)).title
    exact = city.render("report.closed", "zh", sample("report.closed", note="好" * 120)).title

    assert len(long) == 120 and long == "很" * 119 + "…"
    assert exact == "好" * 120


def test_a_title_is_one_line_whatever_the_variables_hold(tmp_path):
    city_file(tmp_path, "zh", "report.closed", "{{ note }}\n\n{{ link }}\n")

    title = Templates(tmp_path).render("report.closed", "zh", sample("report.closed", note="已办结\t \r\n谢谢")).title

    assert title == "已办结 谢谢"
