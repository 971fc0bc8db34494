"""circuit-atlas's data: a registry of pinned, hashed files, their resolution, fetching and cache.

Every file the tasks, the components and the demo read (task data, Pythia's tokenizer, the demo
corpus) is a :class:`DataFile` of :data:`REGISTRY` with its public source pinned to a commit, its
sha256 and its size (:mod:`.registry`). A file is read from the first of ``--data-dir``,
``$CIRCUIT_ATLAS_DATA``, the verified cache and ``../shared/data`` that holds it, after its hash
is checked (:mod:`.resolve`). ``circuit-atlas data fetch`` downloads the registry into the cache
with ``pooch``, ``circuit-atlas data fetch --from DIR`` imports a local copy (:mod:`.fetch`).
docs/data.md lists the sources, licences and citations.

Example::

    from circuit_atlas.data import data_file, load_pythia_tokenizer

    tok = load_pythia_tokenizer()                          # offline GPT-NeoX-20B tokenizer
    path = data_file("tasks/gender-pronoun/gender-pronoun.csv")
"""

from __future__ import annotations

from circuit_atlas.data.fetch import FetchResult, FileStatus, ensure, fetch, import_from, verify
from circuit_atlas.data.registry import (
    CORPUS_FILES,
    GROUPS,
    PYTHIA_TOKENIZER_FILE,
    REGISTRY,
    DataFile,
    Source,
    get,
    select,
)
from circuit_atlas.data.resolve import (
    CACHE_ENV_VAR,
    DATA_ENV_VAR,
    FETCH_COMMAND,
    Location,
    cache_dir,
    corpus_paths,
    data_file,
    data_home,
    locate,
    resolve_data_dir,
    search_path,
    sha256_file,
    verify_file,
)
from circuit_atlas.data.tokenizer import load_pythia_tokenizer

__all__ = [
    "CACHE_ENV_VAR",
    "CORPUS_FILES",
    "DATA_ENV_VAR",
    "DataFile",
    "FETCH_COMMAND",
    "FetchResult",
    "FileStatus",
    "GROUPS",
    "Location",
    "PYTHIA_TOKENIZER_FILE",
    "REGISTRY",
    "Source",
    "cache_dir",
    "corpus_paths",
    "data_file",
    "data_home",
    "ensure",
    "fetch",
    "get",
    "import_from",
    "load_pythia_tokenizer",
    "locate",
    "resolve_data_dir",
    "search_path",
    "select",
    "sha256_file",
    "verify",
    "verify_file",
]
