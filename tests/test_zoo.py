import pytest

from rtml_profile import UserError, zoo


@pytest.mark.parametrize("model_id", zoo.list_models())
def test_parameter_counts_match_hw2(model_id):
    spec = zoo.get(model_id)
    model = zoo.build(spec)
    assert sum(p.numel() for p in model.parameters()) == spec.params


def test_exact_parameter_counts():
    assert [zoo.get(i).params for i in ("1a", "1b", "2a", "2b")] == [57, 42_753, 1_578_506, 1_738_890]


def test_hw2_recipes():
    assert zoo.get("1a").recipe.epochs == 200 and zoo.get("1a").recipe.batch_size is None
    r = zoo.get("2b").recipe
    assert (r.optimizer, r.lr, r.loss, r.batch_size, r.epochs) == ("sgd", 1e-2, "nll", 64, 300)


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
