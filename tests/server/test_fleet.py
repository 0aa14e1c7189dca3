"""Unit tests of the fleet specs, overrides and config rendering (no server)."""

import pytest

from tritonload.core.errors import UsageError
from tritonload.server.fleet import (
    BASE_FLEET,
    GENERATIVE_FLEET,
    PIPELINE_FLEET,
    demo_fleet,
    overrides_from_strings,
    parse_override,
    render_config,
    with_steps,
)


def test_every_batching_model_has_a_nobatch_twin():
    names = [m.name for m in demo_fleet()]
    for base in BASE_FLEET:
        assert base.name in names and base.name + "_nobatch" in names
    assert len(names) == 2 * len(BASE_FLEET) + len(PIPELINE_FLEET) + len(GENERATIVE_FLEET)


def test_the_generator_renders_as_a_decoupled_model_with_its_costs():
    generator = next(m for m in demo_fleet({"text_generator": {"step_base_us": 19000}})
                     if m.name == "text_generator")
    config = render_config(generator)
    assert "model_transaction_policy { decoupled: true }" in config
    assert 'name: "text_input" data_type: TYPE_STRING dims: [ 1 ]' in config
    assert "max_batch_size: 0" in config and "dynamic_batching" not in config
    assert 'key: "step_base_us" value: { string_value: "19000" }' in config
    with pytest.raises(UsageError, match="decoupled model"):
        demo_fleet({"recommender": {"step_base_us": 1}})


def test_the_ensemble_renders_as_triton_ensemble_scheduling():
    fleet = demo_fleet()
    pipeline = next(m for m in fleet if m.name == "image_pipeline")
    config = render_config(pipeline)
    assert 'platform: "ensemble"' in config and "backend" not in config
    assert ('{ model_name: "preprocess" model_version: -1 input_map { key: "raw_images" value: '
            '"raw_images" } output_map { key: "images" value: "planes" } }') in config
    assert ('{ model_name: "image_classifier" model_version: -1 input_map { key: "images" '
            'value: "planes" } output_map { key: "predictions" value: "predictions" } }') in config
    # Serving the ensemble alone brings its steps along.
    assert [m.name for m in with_steps([pipeline], fleet)] == [
        "image_classifier", "preprocess", "image_pipeline"]
    with pytest.raises(UsageError, match="an ensemble has no settings of its own"):
        demo_fleet({"image_pipeline": {"instances": 2}})


def test_rendered_config_follows_triton_conventions():
    text_classifier = next(m for m in demo_fleet() if m.name == "text_classifier")
    config = render_config(text_classifier)
    assert 'name: "text_classifier"' in config
    assert "max_batch_size: 32" in config
    assert 'name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ]' in config
    assert "preferred_batch_size: [ 4, 8, 16, 32 ]" in config
    assert "max_queue_delay_microseconds: 5000" in config
    assert "count: 2 kind: KIND_CPU" in config


def test_nobatch_twin_has_no_dynamic_batching_block():
    twin = next(m for m in demo_fleet() if m.name == "recommender_nobatch")
    config = render_config(twin)
    assert "dynamic_batching" not in config
    assert "max_batch_size: 128" in config  # same tensors, batch dim included


def test_overrides_apply_to_model_and_cost_to_twin():
    fleet = demo_fleet(overrides_from_strings([
        "text_classifier.max_queue_delay_us=100",
        "text_classifier.preferred_batch_sizes=8,16",
        "text_classifier.cost_base_us=20000",
        "image_classifier.instances=3",
    ]))
    by_name = {m.name: m for m in fleet}
    assert by_name["text_classifier"].max_queue_delay_us == 100
    assert by_name["text_classifier"].preferred_batch_sizes == (8, 16)
    assert by_name["text_classifier_nobatch"].cost_base_us == 20000
    assert by_name["text_classifier_nobatch"].max_queue_delay_us == 0
    assert by_name["image_classifier"].instances == 3


@pytest.mark.parametrize("bad, fragment", [
    ("text_classifier.max_queue_delay_us", "MODEL.FIELD=VALUE"),
    ("text_classifier.colour=3", "'colour' is not one of"),
    ("text_classifier.instances=two", "not a number"),
])
def test_bad_override_strings_give_one_clear_line(bad, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_override(bad)


def test_bad_override_values_are_refused():
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        demo_fleet({"nope": {"instances": 1}})
    with pytest.raises(UsageError, match="instances must be >= 1"):
        demo_fleet({"recommender": {"instances": 0}})
    with pytest.raises(UsageError, match="not within 1..32"):
        demo_fleet({"text_classifier": {"preferred_batch_sizes": (64,)}})
    with pytest.raises(UsageError, match="no dynamic batching"):
        demo_fleet({"recommender_nobatch": {"max_queue_delay_us": 10}})
