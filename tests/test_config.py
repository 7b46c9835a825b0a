import pytest
import yaml

from components.trainer import model as model_lib
from pipeline import config as config_lib


@pytest.mark.parametrize("preset", sorted(config_lib.PRESETS))
def test_every_preset_validates(preset):
    config_lib.PRESETS[preset]().validate()


def test_layering_preset_then_yaml_then_flags(tmp_path):
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 3, "batch_size_per_replica": 4}}))
    config = config_lib.load("demo", str(path), {"train": {"epochs": 5}})
    assert config.train.epochs == 5  # flags win over YAML
    assert config.train.batch_size_per_replica == 4  # YAML wins over the preset
    assert config.model.backbone == config_lib.demo().model.backbone


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ValueError, match="train.epoch"):
        config_lib.demo().with_overrides({"train": {"epoch": 3}})


def test_invalid_value_is_rejected():
    with pytest.raises(ValueError, match="bounding_box_format"):
        config_lib.demo().with_overrides({"model": {"bounding_box_format": "xyz"}})


def test_custom_config_round_trip():
    config = config_lib.voc_guide()
    assert config_lib.PipelineConfig.from_custom_config(config.to_custom_config()) == config


def test_config_backbones_are_the_ones_the_trainer_builds():
    assert set(config_lib.BACKBONES) == set(model_lib.BACKBONES)


def test_learning_rate_scales_with_global_batch():
    train = config_lib.TrainConfig(base_learning_rate=0.01)
    assert train.learning_rate(64) == pytest.approx(0.04)


def test_bounding_box_formats_are_kerascvs():
    from keras_cv.src.bounding_box import converters

    assert set(config_lib.BOUNDING_BOX_FORMATS) == set(converters.FROM_XYXY_CONVERTERS) == set(converters.TO_XYXY_CONVERTERS)
