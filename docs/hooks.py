"""mkdocs hook: the home page from README.md, and the repository files the pages link to outside docs/.

The site's home page, index.md, is README.md: on_files generates it with README's repo-root-relative links
rewritten to docs-relative ones (`docs/algos/td3.md` -> `algos/td3.md`, `algos/td3.py` -> `../algos/td3.py`),
so there is no hand-kept copy. A link to README.md or to docs/ from any page leads to the home page.

The pages link to repository files with repo-relative paths that are right on a code host
(`../results/parity.md` from docs/parity.md, `../../algos/td3.py` from docs/algos/td3.md). mkdocs
only knows the files under docs/, so:

- on_files adds every such file that exists as a File served under `_repo/<path>` (Markdown files
  become pages, so their own links are followed the same way, e.g. results/SUMMARY.md's plots);
- on_page_markdown rewrites the links to point at those files.

A link to a file that does not exist is left as it is, so mkdocs reports it and `mkdocs build
--strict` fails. Links inside code blocks and code spans are not links and are left alone.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re

PREFIX = "_repo"
README = "README.md"  # repository path of the home page's source
HOME = "index.md"
log = logging.getLogger("mkdocs.hooks.home")

# A fenced code block, an inline code span, an inline link or image `[text](target "title")`, or a
# reference definition `[id]: target`.
_TOKEN = re.compile(
    r"(?P<fence>^[ \t]*(?P<ticks>```+|~~~+)[^\n]*\n.*?^[ \t]*(?P=ticks)[ \t]*$)"
    r"|(?P<code>(?P<bt>`+)(?:(?!\n[ \t]*\n).)+?(?P=bt))"
    r"|(?P<inline>!?\[(?:[^\[\]\n]|\[[^\]\n]*\])*\]\()(?P<target>[^)\s]+)(?P<rest>(?:\s+\"[^\"]*\")?\))"
    r"|(?P<refdef>^[ \t]{0,3}\[[^\]\n]+\]:[ \t]*)(?P<reftarget>\S+)",
    re.DOTALL | re.MULTILINE,
)


def links(markdown: str) -> list[str]:
    """Every link target of a Markdown text, outside code, in order."""
    found = []
    for m in _TOKEN.finditer(markdown):
        target = m.group("target") or m.group("reftarget")
        if target:
            found.append(target.strip("<>"))
    return found


def relative_path(target: str) -> str | None:
    """The path part of a relative link (anchor and query dropped), or None for any other link."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("/", "#")):
        return None
    path = re.split(r"[#?]", target, maxsplit=1)[0]
    return path or None


def _rewrite(markdown: str, fn) -> str:
    """Apply fn to every link target outside code; fn returns the new target."""

    def sub(m: re.Match) -> str:
        if m.group("target"):
            return m.group("inline") + fn(m.group("target")) + m.group("rest")
        if m.group("reftarget"):
            return m.group("refdef") + fn(m.group("reftarget"))
        return m.group(0)

    return _TOKEN.sub(sub, markdown)


def home_markdown(readme: str, docs_rel: str = "docs") -> str:
    """README.md's text as the home page docs/index.md: every relative link made relative to docs/."""

    def fn(target: str) -> str:
        path, tail = _split(target)
        if not path:
            return target
        resolved = posixpath.normpath(path)
        return posixpath.relpath(resolved, docs_rel) + tail

    return _rewrite(readme, fn)


def _split(target: str) -> tuple[str, str]:
    path = relative_path(target) or ""
    return path, target[len(path):]


class _Repo:
    """Where the repository and its docs folder are, and which repo files are served."""

    def __init__(self, config) -> None:
        self.docs = os.path.realpath(config["docs_dir"])
        self.root = os.path.dirname(self.docs)
        self.docs_rel = os.path.relpath(self.docs, self.root).replace(os.sep, "/")
        self.served: dict[str, str] = {}  # repo path -> src_uri of the served File

    def repo_path(self, src_uri: str) -> str:
        """The repository path a page's source stands for."""
        if src_uri.startswith(PREFIX + "/"):
            return src_uri[len(PREFIX) + 1:]
        return posixpath.join(self.docs_rel, src_uri)

    def resolve(self, page_repo_path: str, path: str) -> str | None:
        """The repository path a relative link leads to, or None if it leaves the repository."""
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), path))
        return None if joined.startswith("../") or joined == ".." else joined

    def outside_docs(self, repo_path: str) -> bool:
        return not (repo_path + "/").startswith(self.docs_rel + "/")


_state: dict[str, _Repo] = {}


def on_files(files, config):
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File, InclusionLevel

    repo = _state["repo"] = _Repo(config)
    if files.get_file_from_path(HOME) is not None:
        raise PluginError(f"{repo.docs_rel}/{HOME} exists, but the home page is generated from {README}: delete it")
    try:
        with open(os.path.join(repo.root, README), encoding="utf-8") as fh:
            readme = fh.read()
    except OSError as e:
        raise PluginError(f"the home page is generated from {README}, which cannot be read: {e}") from None
    for target in links(readme):  # named as written in README.md; mkdocs names them as on the home page
        path = relative_path(target)
        resolved = path and repo.resolve(README, path)
        if resolved and resolved != repo.docs_rel and not os.path.isfile(os.path.join(repo.root, resolved)):
            log.warning(f"{README} (the home page) links to '{target}', which is no file of the repository")
    files.append(File.generated(config, HOME, content=home_markdown(readme, repo.docs_rel)))
    todo = [(f.src_uri, f.content_string) for f in files.documentation_pages()]
    while todo:
        src_uri, text = todo.pop()
        here = repo.repo_path(src_uri)
        for target in links(text):
            path = relative_path(target)
            resolved = path and repo.resolve(here, path)
            if not resolved or not repo.outside_docs(resolved) or resolved in repo.served or resolved == README:
                continue
            abs_target = os.path.join(repo.root, resolved)
            if not os.path.isfile(abs_target):
                continue  # left for mkdocs to report
            uri = f"{PREFIX}/{resolved}"
            repo.served[resolved] = uri
            # Reached by links only: not in the nav, and not subject to exclude_docs (*.py of docs/).
            new = File.generated(config, uri, abs_src_path=abs_target, inclusion=InclusionLevel.NOT_IN_NAV)
            files.append(new)
            if new.is_documentation_page():
                todo.append((uri, new.content_string))
    return files


def on_serve(server, config, builder):
    """`mkdocs serve` rebuilds when README.md, the home page's source, changes."""
    server.watch(os.path.join(os.path.dirname(os.path.realpath(config["docs_dir"])), README))
    return server


def on_page_markdown(markdown, page, config, files):
    repo = _state.get("repo")
    if repo is None:
        return markdown
    here = repo.repo_path(page.file.src_uri)
    page_dir = posixpath.dirname(page.file.src_uri)

    def fn(target: str) -> str:
        path, tail = _split(target)
        resolved = path and repo.resolve(here, path)
        if not resolved:
            return target
        if resolved in repo.served:
            new_uri = repo.served[resolved]
        elif resolved in (README, repo.docs_rel):  # README and the docs folder: the home page
            new_uri = HOME
        elif not repo.outside_docs(resolved):
            new_uri = resolved[len(repo.docs_rel) + 1:]
        else:
            return target  # a missing file: mkdocs reports the link as it was written
        return posixpath.relpath(new_uri, page_dir or ".") + tail

    return _rewrite(markdown, fn)
