"""Pick the bundled demo catalog (models/data/demo_courses.json) from ../shared/data/courses.json.

Deterministic: every category gets a share of about 400 rows (at least 8), the rows of a
category taken in sha1(id) order, after a few titles for each topic people search most
(so that the relevance set in tests/ has answers). The 3 臺北e大 rows are always in.
Run: .venv/bin/python bench/make_demo_catalog.py [../shared/data/courses.json]
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "courses.json"
TARGET = ROOT / "models" / "data" / "demo_courses.json"
SIZE = 400
DEMO_PASSWORD = "edoor2025"
KEEP = (
    "id",
    "title",
    "category",
    "hours",
    "hours_estimated",
    "description",
    "audience",
    "tags",
    "platform",
    "password_protected",
)
# Topics people type most: take up to 3 titles each before filling by category.
TOPICS = [
    "資安",
    "資訊安全",
    "資通安全",
    "性平",
    "性別平等",
    "性騷擾",
    "長照",
    "長期照顧",
    "勞基法",
    "勞動基準法",
    "人工智慧",
    "生成式",
    "ChatGPT",
    "個資",
    "個人資料",
    "廉政",
    "行政中立",
    "政府採購",
    "環境教育",
    "淨零",
    "永續",
    "ESG",
    "人權",
    "CEDAW",
    "兒少",
    "兒童權利",
    "身心障礙",
    "失智",
    "急救",
    "CPR",
    "心理健康",
    "消防",
    "英語",
    "公文",
    "簡報",
    "Excel",
    "數位轉型",
    "智慧城市",
    "詐騙",
    "食品安全",
    "交通安全",
    "營養",
    "高齡",
    "領導",
    "溝通",
    "情緒",
    "壓力",
    "行政程序",
    "著作權",
    "雲端",
    "區塊鏈",
    "氣候變遷",
    "能源",
    "原住民",
    "客家",
    "多元文化",
    "自殺防治",
    "毒品",
    "睡眠",
    "癌症",
    "糖尿病",
    "疫苗",
    "霸凌",
    "職場",
    "利益衝突",
    "檔案管理",
    "生命教育",
    "閱讀",
    "農業",
    "動物保護",
    "防疫",
    "韌性",
    "地震",
    "颱風",
    "ODF",
    "Notion",
    "AED",
    "登革熱",
    "家庭暴力",
    "性侵",
    "災害",
    "空氣",
    "水資源",
    "減塑",
    "循環經濟",
    "文化",
    "藝術",
    "音樂",
    "電影",
    "法律",
    "國家賠償",
    "預算",
    "會計",
    "主管",
    "公務人員",
    "人事",
    "運動",
    "健康",
    "飲食",
    "長者",
    "銀髮",
    "資料",
    "AI",
]


def _key(row: dict[str, object]) -> str:
    return hashlib.sha1(str(row["id"]).encode(), usedforsecurity=False).hexdigest()


def pick(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    ordered = sorted(rows, key=_key)
    chosen: dict[str, dict[str, object]] = {
        str(r["id"]): r for r in ordered if str(r["id"]).startswith("tpe-")
    }
    for topic in TOPICS:
        hits = [r for r in ordered if topic.casefold() in str(r["title"]).casefold()]
        for r in hits[:3]:
            chosen.setdefault(str(r["id"]), r)
    by_cat: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in ordered:
        by_cat[str(r["category"])].append(r)
    have: dict[str, int] = defaultdict(int)
    for r in chosen.values():
        have[str(r["category"])] += 1
    for cat, members in sorted(by_cat.items()):
        quota = max(8, round(SIZE * len(members) / len(rows)))
        for r in members:
            if have[cat] >= quota:
                break
            if str(r["id"]) not in chosen:
                chosen[str(r["id"])] = r
                have[cat] += 1
    out = [{k: r[k] for k in KEEP if k in r} for r in chosen.values()]
    for r in out:
        if r.get("password_protected"):
            # A demo course password, so the password flow can be tried (documented in SEARCH.md).
            r["password"] = DEMO_PASSWORD
    return sorted(out, key=lambda r: str(r["id"]))


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    rows = json.loads(source.read_text("utf-8"))
    demo = pick(rows)
    TARGET.write_text(json.dumps(demo, ensure_ascii=False, indent=1) + "\n", "utf-8")
    print(f"{len(demo)} courses -> {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
