"""A real Transform graph built from 300 bundled rows (shared by the tests)."""

import csv
import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _raw_rows(schema, limit):
    """CSV rows typed as the schema says, each value a list ([] when missing)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    kinds = {f.name: f for f in schema.feature}
    path = os.path.join(REPO_ROOT, "data", "taxi", "span-2016", "data.csv")
    rows = []
    with open(path, newline="") as f:
        for record in csv.DictReader(f):
            row = {}
            for name, feature in kinds.items():
                text = record[name]
                cast = {schema_pb2.INT: lambda v: int(float(v)), schema_pb2.FLOAT: float}.get(
                    feature.type, lambda v: v.encode()
                )
                row[name] = [cast(text)] if text != "" else []
            rows.append(row)
            if len(rows) == limit:
                break
    return rows


@pytest.fixture(scope="session")
def schema():
    from pipeline.run_summary import load_schema

    return load_schema(os.path.join(REPO_ROOT, "data", "schema"))


@pytest.fixture(scope="session")
def raw_rows(schema):
    return _raw_rows(schema, 300)


@pytest.fixture(scope="session")
def transform_output(tmp_path_factory, schema, raw_rows):
    """TFTransformOutput of ``preprocessing_fn`` analyzed on ``raw_rows``."""
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from components.preprocessing import preprocessing_fn

    out = str(tmp_path_factory.mktemp("transform"))
    metadata = dataset_metadata.DatasetMetadata(schema)
    with tft_beam.Context(temp_dir=os.path.join(out, "tmp"), force_tf_compat_v1=False):
        transformed, transform_fn = (raw_rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(out)
    # The raw schema goes where TFX Transform puts it, for raw_feature_spec().
    metadata_io.write_metadata(metadata, os.path.join(out, tft.TFTransformOutput.RAW_METADATA_DIR))
    data, _ = transformed
    return tft.TFTransformOutput(out), data


def _serialize_example(row, raw_spec) -> bytes:
    """A raw row (feature -> list of values) as a tf.Example, typed as the schema says."""
    import tensorflow as tf

    feature = {}
    for key, values in row.items():
        dtype = raw_spec[key].dtype
        if dtype == tf.string:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif dtype.is_floating:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_examples(rows, path, raw_spec) -> None:
    """Raw rows as a gzipped TFRecord of tf.Examples (``_serialize_example``)."""
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            writer.write(_serialize_example(row, raw_spec))


@pytest.fixture(scope="session")
def serialize_example():
    """``serialize_example(row, raw_spec) -> bytes``."""
    return _serialize_example


@pytest.fixture(scope="session")
def write_examples():
    """``write_examples(rows, path, raw_spec)``: a gzipped TFRecord of typed tf.Examples."""
    return _write_examples
