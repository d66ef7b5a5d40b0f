"""Course search: folding and script conversion, an editable dictionary, an in-memory index."""

from models.search.index import CourseDoc, Filters, Hit, SearchIndex, SearchResult
from models.search.normalise import fold, query_forms
from models.search.service import SearchService, demo_catalog_path
from models.search.synonyms import Dictionary, load_dictionary

__all__ = [
    "CourseDoc",
    "Dictionary",
    "Filters",
    "Hit",
    "SearchIndex",
    "SearchResult",
    "SearchService",
    "demo_catalog_path",
    "fold",
    "load_dictionary",
    "query_forms",
]
