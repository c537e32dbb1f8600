"""The knowledge base's exceptions, each with a stable code (the tree is drawn in ``hub/errors.py``)."""

from __future__ import annotations

from hub.errors import Conflict, InvalidInput, NotFound


class ArticleNotFound(NotFound):
    code = "article_not_found"


class VersionNotFound(NotFound):
    code = "article_version_not_found"


class WordingNotFound(NotFound):
    code = "learned_wording_not_found"


class SlugTaken(Conflict):
    code = "article_slug_taken"


class StaleArticle(Conflict):
    code = "article_changed"


class InvalidQuery(InvalidInput):
    code = "invalid_query"


class InvalidFrontMatter(InvalidInput):
    code = "invalid_front_matter"


class InvalidEvalFile(InvalidInput):
    code = "invalid_eval_file"
