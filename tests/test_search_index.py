"""Course search: script conversion, dictionary, typos, English, ranking, filters, paging."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.catalog_import import parse_csv, read_catalog
from models.courses import SearchLog, apply_catalog
from models.search import (
    Dictionary,
    Filters,
    SearchIndex,
    SearchService,
    demo_catalog_path,
    fold,
    load_dictionary,
    query_forms,
)
from models.search.lexicon import cedict_words, parse

NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def demo() -> SearchIndex:
    return SearchIndex.from_records(json.loads(demo_catalog_path().read_text("utf-8")))


def _index(*titles: str, **extra: object) -> SearchIndex:
    return SearchIndex.from_records(
        [
            {"id": f"c{i}", "title": t, "category": "其他", "hours": 1, **extra}
            for i, t in enumerate(titles)
        ]
    )


def test_fold_and_script_conversion() -> None:
    assert fold("ＡＩ　應用（上）") == "ai 應用 上"
    assert fold("台北") == fold("臺北")
    forms = query_forms("软件开发")
    assert forms.converted
    assert forms.primary == "軟體開發"
    # Shared characters: searched as typed first, and in Taiwan usage too.
    shared = query_forms("人工智能")
    assert (shared.primary, shared.secondary) == ("人工智能", "人工智慧")
    assert query_forms("社區").secondary is not None
    assert query_forms("資安").secondary is None


def test_traditional_titles_are_not_rewritten() -> None:
    # OpenCC's Taiwan phrases would turn 社區 into 社群; titles keep their words, and the
    # query as typed ranks above its converted reading.
    index = _index("社群媒體經營", "社區營造案例分享", "不相關")
    assert [h.title for h in index.search("社區").hits] == ["社區營造案例分享", "社群媒體經營"]
    assert [h.title for h in index.search("社群").hits] == ["社群媒體經營"]


def test_abbreviations_expand_both_ways(demo: SearchIndex) -> None:
    for query, word in [("資安", "資訊安全"), ("長照", "長期照顧"), ("勞基法", "勞動基準法")]:
        titles = [h.title for h in demo.search(query, limit=50).hits]
        assert any(word in t for t in titles), (query, titles[:5])
    index = _index("資安健診實務", "資訊安全概論", "不相關的課")
    assert {h.title for h in index.search("資訊安全").hits} == {"資安健診實務", "資訊安全概論"}


def test_simplified_english_and_typos_find_the_same_courses(demo: SearchIndex) -> None:
    base = {h.id for h in demo.search("資訊安全", limit=5).hits}
    for query in ["信息安全", "网络安全", "information security", "infomation securty", "資訊安圈"]:
        found = demo.search(query, limit=5)
        assert {h.id for h in found.hits} & base, query
    assert demo.search("infomation securty").corrected == "information security"
    assert demo.search("資訊安圈").corrected == "資訊安全"
    assert demo.search("資訊安全").corrected is None


def _titles_only(*titles: str) -> SearchIndex:
    """An index whose only English vocabulary is its titles' (no dictionary)."""
    return SearchIndex.from_records(
        [{"id": f"c{i}", "title": t, "category": "其他", "hours": 1} for i, t in enumerate(titles)],
        Dictionary(),
    )


def test_an_english_word_is_never_corrected_into_another_word() -> None:
    index = _titles_only("Tech 新知", "Pain 疼痛照護", "Brain 腦科學", "Banking 金融")
    # Each is within rapidfuzz ratio 80 of a title word, but is a word of its own.
    for query in ["teach", "paint", "brand", "baking"]:
        found = index.search(query)
        assert found.corrected is None, query
        assert found.hits == [], (query, [h.title for h in found.hits])
    assert index.search("tech").hits[0].title == "Tech 新知"


def test_an_unknown_english_word_is_corrected_to_the_closest_known_one() -> None:
    index = _titles_only("Technology 導論", "Depression 憂鬱", "Crime 犯罪")
    found = index.search("tecnology")
    assert found.corrected == "technology"
    assert [h.title for h in found.hits] == ["Technology 導論"]
    assert index.search("depresion").corrected == "depression"
    # A plural of a known word is that word, not a typo.
    plural = index.search("crimes")
    assert plural.corrected is None
    assert [h.title for h in plural.hits] == ["Crime 犯罪"]


def test_a_plural_or_adjective_means_its_base_word(tmp_path: Path) -> None:
    path = tmp_path / "synonyms.yaml"
    path.write_text(
        "english:\n  environment: [環境]\n  environmental education: [環境教育]\n"
        "  biology: [生物]\n",
        encoding="utf-8",
    )
    index = SearchIndex.from_records(
        [
            {"id": f"c{i}", "title": t, "category": "其他", "hours": 1}
            for i, t in enumerate(["環境倫理", "環境教育概論", "生物多樣性", "不相關"])
        ],
        load_dictionary(path),
    )
    # A word of a phrase entry ('environmental' of 'environmental education') alone.
    assert {h.title for h in index.search("environmental").hits} == {"環境倫理", "環境教育概論"}
    assert index.search("environmental education").hits[0].title == "環境教育概論"
    # A word no entry has at all: its base, with no "did you mean".
    found = index.search("biological")
    assert [h.title for h in found.hits] == ["生物多樣性"]
    assert found.corrected is None


def test_an_ing_form_means_its_base_word(tmp_path: Path) -> None:
    path = tmp_path / "synonyms.yaml"
    path.write_text(
        "english:\n  budget: [預算]\n  rescue: [救援]\n  marketing: [行銷]\n  market: [市場]\n",
        encoding="utf-8",
    )
    index = SearchIndex.from_records(
        [
            {"id": f"c{i}", "title": t, "category": "其他", "hours": 1}
            for i, t in enumerate(["參與式預算實務", "山域救援", "數位行銷", "市場調查"])
        ],
        load_dictionary(path),
    )
    found = index.search("budgeting")
    assert [h.title for h in found.hits] == ["參與式預算實務"]
    assert found.corrected is None
    assert [h.title for h in index.search("rescuing").hits] == ["山域救援"]
    # A word with an entry of its own keeps it: marketing is 行銷, not the market.
    assert [h.title for h in index.search("marketing").hits] == ["數位行銷"]


def test_a_phrase_entry_is_matched_before_its_words(tmp_path: Path) -> None:
    # brain death is 腦死, not 腦 + 死亡; foster care is 安置, not care (照顧).
    path = tmp_path / "synonyms.yaml"
    path.write_text(
        "english:\n  brain: [腦]\n  death: [死亡]\n  brain death: [腦死]\n"
        "  care: [照顧]\n  foster care: [安置]\n  child: [兒少]\n",
        encoding="utf-8",
    )
    titles = ["腦死判定", "腦中風與死亡", "死亡識能", "兒少安置實務", "長期照顧"]
    index = SearchIndex.from_records(
        [{"id": f"c{i}", "title": t, "category": "其他", "hours": 1} for i, t in enumerate(titles)],
        load_dictionary(path),
    )
    for query in ["brain death", "Brain-Death", "brain deaths", "brain death determination"]:
        assert [h.title for h in index.search(query).hits] == ["腦死判定"], query
    for query in ["foster care", "child foster care", "foster-care"]:
        assert [h.title for h in index.search(query).hits] == ["兒少安置實務"], query
    # The words apart are still the words: the title with both comes first.
    assert index.search("death brain").hits[0].title == "腦中風與死亡"


def test_an_entry_in_the_other_number_means_the_same(tmp_path: Path) -> None:
    # teachers has an entry, teacher does not; customs (海關) is no plural of custom.
    path = tmp_path / "synonyms.yaml"
    path.write_text(
        "english:\n  teachers: [教師]\n  policy: [政策]\n  working conditions: [勞動條件]\n"
        "  customs: [海關]\n",
        encoding="utf-8",
    )
    dictionary = load_dictionary(path)
    assert dictionary.lookup("teacher") == ("teacher", "教師")
    assert dictionary.lookup("policies") == ("policies", "政策")
    assert dictionary.lookup("working condition") == ("working condition", "勞動條件")
    assert dictionary.lookup("custom") is None
    index = SearchIndex.from_records(
        [
            {"id": f"c{i}", "title": t, "category": "其他", "hours": 1}
            for i, t in enumerate(["教師退休制度", "勞動條件", "海關實務"])
        ],
        dictionary,
    )
    assert [h.title for h in index.search("teacher").hits] == ["教師退休制度"]
    assert [h.title for h in index.search("working condition").hits] == ["勞動條件"]


def test_a_phrase_typed_with_its_verb_inflected_is_the_phrase(tmp_path: Path) -> None:
    # 'working from home' is the entry 'work from home', though 'working' alone is 'work'.
    path = tmp_path / "synonyms.yaml"
    path.write_text(
        "english:\n  work: [工作]\n  work from home: [居家辦公]\n  home: [居家]\n"
        "  working hours: [工時]\n  management: [管理]\n  health: [健康]\n"
        "stopwords: [your, own]\n",
        encoding="utf-8",
    )
    titles = ["居家辦公技能", "居家照護", "工作與家庭", "工時概念", "健康管理入門", "健康飲食"]
    index = SearchIndex.from_records(
        [{"id": f"c{i}", "title": t, "category": "其他", "hours": 1} for i, t in enumerate(titles)],
        load_dictionary(path),
    )
    for query in ["working from home", "work from home", "Working-from-home"]:
        assert [h.title for h in index.search(query).hits] == ["居家辦公技能"], query
    # An entry that the typed phrase is stays itself.
    assert [h.title for h in index.search("working hours").hits] == ["工時概念"]
    # The noun of a verb: managing is management; your and own are filler.
    found = index.search("managing your own health")
    assert found.hits[0].title == "健康管理入門"
    assert found.understood == "management health"


def test_an_english_typo_keeps_its_first_letter() -> None:
    # "eepression" is within ratio 80 of "depression", but a misspelling rarely changes its
    # first letter: no word starting with e is that close, so nothing is corrected.
    index = _titles_only("Depression 憂鬱", "Earth 地球")
    found = index.search("eepression")
    assert found.corrected is None
    assert found.hits == []
    assert index.search("dpression").corrected == "depression"


def test_english_words_inside_titles() -> None:
    index = _index("Excel資料整理術", "生成式AI應用", "email 寫作", "Notion初階入門")
    assert [h.title for h in index.search("excel").hits] == ["Excel資料整理術"]
    # "ai" is a word, not a substring of "email".
    assert [h.title for h in index.search("AI").hits] == ["生成式AI應用"]
    assert [h.title for h in index.search("notio").hits] == ["Notion初階入門"]


def test_exact_title_first_then_prefix_then_shorter() -> None:
    index = _index(
        "行政中立理論與實務補充教材第二部分",
        "公務人員行政中立法與實務",
        "行政中立理論與實務",
        "行政中立",
    )
    order = [h.title for h in index.search("行政中立理論與實務").hits]
    assert order[:2] == ["行政中立理論與實務", "行政中立理論與實務補充教材第二部分"]
    assert index.search("行政中立").hits[0].title == "行政中立"


def test_ties_break_by_popularity_then_id() -> None:
    index = SearchIndex.from_records(
        [
            {"id": "b", "title": "淨零生活", "category": "x", "hours": 1, "popularity": 1},
            {"id": "a", "title": "淨零生活", "category": "x", "hours": 1, "popularity": 1},
            {"id": "c", "title": "淨零生活", "category": "x", "hours": 1, "popularity": 9},
        ]
    )
    assert [h.id for h in index.search("淨零").hits] == ["c", "a", "b"]


def test_filters_and_paging(demo: SearchIndex) -> None:
    everything = demo.search("健康", limit=100)
    assert everything.total > 20
    pages = [demo.search("健康", offset=o, limit=10) for o in range(0, everything.total, 10)]
    ids = [h.id for p in pages for h in p.hits]
    assert ids == [h.id for h in everything.hits][: len(ids)]
    assert len(ids) == len(set(ids)) == everything.total
    assert pages[0].has_more
    assert not pages[-1].has_more
    short = demo.search("健康", filters=Filters(max_hours=1.0), limit=100)
    assert 0 < short.total < everything.total
    assert all(h.hours <= 1.0 for h in short.hits)
    cat = demo.search("安全", filters=Filters(category="資訊安全"), limit=100)
    assert cat.total > 0
    assert all(h.category == "資訊安全" for h in cat.hits)
    civil = demo.search("公務人員", filters=Filters(audience="civil_servant"), limit=100)
    assert all(h.audience == "civil_servant" for h in civil.hits)


def test_zero_results_offer_alternatives(demo: SearchIndex) -> None:
    typo = demo.search("資鷹")  # no homophone of either character makes a title word
    assert typo.total == 0
    assert "資訊安全" in typo.suggestions
    assert typo.related_categories[0] == "資訊安全"
    nonsense = demo.search("xyzzy")
    assert nonsense.total == 0
    assert nonsense.related_categories  # never an empty answer
    assert demo.search("   ").total == 0


def test_dictionary_is_editable_data(tmp_path: Path) -> None:
    custom = tmp_path / "synonyms.yaml"
    custom.write_text("groups:\n  - [消防安全, 防火]\n", "utf-8")
    records = [{"id": "x", "title": "消防安全講習", "category": "防災安全", "hours": 1}]
    assert SearchIndex.from_records(records, load_dictionary(custom)).search("防火").total == 1
    plain = tmp_path / "empty.yaml"
    plain.write_text("groups: []\n", "utf-8")
    assert SearchIndex.from_records(records, load_dictionary(plain)).search("防火").total == 0


def test_every_dictionary_group_finds_the_same_as_its_preferred_word() -> None:
    dictionary = load_dictionary()
    assert dictionary.terms["資安"][:2] == ("資安", "資訊安全")
    assert "人工智慧" in dictionary.terms["artificial intelligence"]
    assert dictionary.related["資訊安全"]


def test_shared_catalog_when_present(shared_dir: Path | None) -> None:
    """A conditional extra check on the 4,048 real titles; the demo always runs."""
    path = demo_catalog_path()
    if shared_dir is not None:
        path = shared_dir / "data" / "courses.json"
    parsed = read_catalog(path)
    index = SearchIndex.from_records([{**r.__dict__, "tags": list(r.tags)} for r in parsed.rows])
    assert len(index) == len(parsed.rows)
    for query in ["資安", "性平", "長照", "勞基法", "人工智能", "information security"]:
        assert index.search(query).total > 0, query


async def test_service_reloads_after_import_and_logs(session: AsyncSession) -> None:
    service = SearchService()
    assert service.search("資安").total == 0
    csv = "id,title,category,hours\na,資安入門,資訊安全,1\nb,性平概論,性別平等,1\n"
    await apply_catalog(session, parsed=parse_csv(csv.encode()), now=NOW)
    assert await service.reload(session) == 2
    result = await service.search_and_log(session, "资安", channel="telegram", now=NOW)
    assert [h.id for h in result.hits] == ["a"]
    await service.search_and_log(session, "资安", channel="telegram", now=NOW, offset=10)
    await session.commit()
    logs = (await session.scalars(select(SearchLog))).all()
    assert [(x.query, x.normalised, x.result_count, x.channel) for x in logs] == [
        ("资安", "資安", 1, "telegram")
    ]
    # Retiring a course and reloading removes it from the results.
    await apply_catalog(
        session,
        parsed=parse_csv(b"id,title,category,hours\nb,x,y,1\n"),
        now=NOW,
        retire_absent=True,
    )
    await service.reload(session)
    assert service.search("資安").total == 0


def test_also_counts_what_other_filters_would_keep_in_the_same_pass(demo: SearchIndex) -> None:
    public, civil = Filters(audience="public"), Filters(audience="civil_servant")
    hidden = {}
    for query in ("資安", "公務人員", "長照", "人工智慧"):
        seen = demo.search(query, filters=public, also=civil)
        assert seen.total == demo.search(query, filters=public).total
        assert all(h.audience == "public" for h in seen.hits)
        hidden[query] = seen.also_total
        assert seen.also_total == demo.search(query, filters=civil).total
    assert any(hidden.values())  # the demo catalog has civil-servant courses to count
    assert demo.search("資安", filters=public).also_total == 0  # only when asked


def test_homophone_typos_are_heard_as_meant(demo: SearchIndex) -> None:
    """The input method's wrong pick of a same-sounding character (a heteronym too: 長 is
    chang and zhang) finds what the right word finds, and says what it searched for."""
    for typed, meant, shown in (
        ("資案", "資安", "資訊安全"),
        ("長找", "長照", "長期照顧"),
        ("行政中粒", "行政中立", "行政中立"),
    ):
        found = demo.search(typed, limit=5)
        right = {h.id for h in demo.search(meant, limit=100).hits}
        assert found.corrected == shown, typed
        assert found.hits, typed
        assert {h.id for h in found.hits} <= right, typed


def test_sentences_find_what_their_key_words_find_and_echo_them(demo: SearchIndex) -> None:
    sentence = demo.search("我想找一門關於資訊安全的課程")
    words = demo.search("資訊安全")
    assert [h.id for h in sentence.hits] == [h.id for h in words.hits]
    assert sentence.understood == "資訊安全"
    assert demo.search("I want a course about information security").understood == (
        "information security"
    )
    assert demo.search("生成式AI應用").understood == "生成式AI應用"  # the case typed
    assert demo.search("台北 長照").understood == "臺北 長照"


def test_a_common_or_weak_word_does_not_outrank_the_topic() -> None:
    records = [
        {"id": "a", "title": "公務人員服務守則", "category": "公務知能", "hours": 1},
        {"id": "b", "title": "公務人員差勤", "category": "公務知能", "hours": 1},
        {"id": "c", "title": "退休撫卹", "category": "公務知能", "hours": 1},
        {"id": "d", "title": "勤休制度宣導", "category": "公務知能", "hours": 1},
    ]
    index = SearchIndex.from_records(records)
    assert index.search("公務人員退休制度").hits[0].id == "c"


CEDICT_LINES = [
    "# CC-CEDICT",
    "抹片 抹片 [mo3 pian4] /smear (medicine)/",
    "伽馬射線 伽马射线 [jia1 ma3 she4 xian4] /gamma ray/",
    "什麼 什么 [shen2 me5] /what?/something/anything/",
    "爆炸 爆炸 [bao4 zha4] /explosion/to explode/to burst/",
    "走 走 [zou3] /to walk/to go/",
    "阿姨 阿姨 [a1 yi2] /see 阿姨/maternal aunt/",
]


def test_the_lexicon_reads_cc_cedict_backwards() -> None:
    lexicon = parse(CEDICT_LINES)
    assert lexicon["smear"] == ("抹片",)  # "(medicine)" is a note, not a word
    assert lexicon["gamma ray"] == ("伽馬射線",)
    assert lexicon["anything"] == ("什麼",)
    assert lexicon["burst"] == ("爆炸",)  # "to burst": the verb's "to" is no word
    assert "walk" not in lexicon  # a lone character is inside too many words
    assert "see" not in " ".join(lexicon)  # a reference is no meaning
    assert lexicon["maternal aunt"] == ("阿姨",)
    # The package that ships CC-CEDICT is a dependency: the real lexicon is there.
    assert "抹片" in cedict_words()


def test_english_the_dictionary_lacks_is_found_through_the_lexicon() -> None:
    records = [
        {"id": f"c{i}", "title": t, "category": "其他", "hours": 1}
        for i, t in enumerate(
            [
                "抹片篩檢重要性",
                "宇宙中的煙火秀－伽馬射線爆",
                "什麼是知識管理",
                "知識管理入門",
                "說什麼都好",
            ]
        )
    ]
    index = SearchIndex.from_records(records, lexicon=parse(CEDICT_LINES))
    assert [h.title for h in index.search("pap smear").hits] == ["抹片篩檢重要性"]
    # A phrase of the lexicon, typed in the other number.
    assert [h.title for h in index.search("gamma rays").hits] == ["宇宙中的煙火秀－伽馬射線爆"]
    # Only words that some title holds are kept: no title says 爆炸.
    assert not index.search("burst").hits
    # Beside words the dictionary knows, a guess only adds to what they find: the filler
    # "anything" (什麼) finds no course of its own.
    found = {h.title for h in index.search("anything on knowledge management").hits}
    assert found == {"什麼是知識管理", "知識管理入門"}
    # The dictionary's own entry wins over the lexicon's reading of the same words.
    hand = SearchIndex.from_records(records, lexicon={"knowledge management": ("說什麼",)})
    assert {h.title for h in hand.search("knowledge management").hits} == {
        "什麼是知識管理",
        "知識管理入門",
    }
