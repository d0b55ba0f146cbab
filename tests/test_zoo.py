import pytest

from rtml_profile import UserError, zoo


@pytest.mark.parametrize("model_id", zoo.list_models())
def test_parameter_counts_match_hw2(model_id):
    spec = zoo.get(model_id)
    model = zoo.build(spec)
    assert sum(p.numel() for p in model.parameters()) == spec.params


@pytest.mark.parametrize("model_id", zoo.list_models())
def test_parameter_count_from_the_layer_sizes(model_id):
    """An independent count: a dense layer a -> b has (a + 1) * b parameters (weights and biases)."""
    spec = zoo.get(model_id)
    sizes = [spec.in_features, *spec.hidden, spec.out_features]
    assert sum((a + 1) * b for a, b in zip(sizes, sizes[1:])) == spec.params


def test_recipes_agree_with_the_task():
    """Classifiers train on NLL over minibatches (HW2 part 2); regressors full-batch on MSE (part 1)."""
    for spec in zoo.MODELS.values():
        loss, full_batch = ("nll", False) if spec.task == "classification" else ("mse", True)
        assert spec.recipe.loss == loss and (spec.recipe.batch_size is None) == full_batch


def test_unknown_id_lists_valid_ones():
    with pytest.raises(UserError, match="1a, 1b, 2a, 2b"):
        zoo.get("3c")


@pytest.mark.parametrize(
    "field,value",
    [
        ("epochs", 0),
        ("epochs", -3),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("lr", float("inf")),
        ("lr", -1e-3),
        ("batch_size", 0),
        ("batch_size", -64),
    ],
)
def test_bad_overrides(field, value):
    with pytest.raises(UserError):
        zoo.with_overrides(zoo.get("2a").recipe, **{field: value})


def test_overrides_apply():
    r = zoo.with_overrides(zoo.get("2a").recipe, epochs=3, lr=0.1, batch_size=None)
    assert (r.epochs, r.lr, r.batch_size) == (3, 0.1, 64)
