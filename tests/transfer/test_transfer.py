"""Unit tests for course_lib.transfer: layer groups, freezing, gradual unfreezing, discriminative LRs,
schedules (STLR, warm-up + decay) and L2-SP, all on a tiny stand-in for a BERT/GPT-like model."""

import math

import pytest
import torch
from torch import nn

from course_lib.transfer import (
    L2SP,
    GradualUnfreezer,
    WeightSnapshot,
    discriminative_lrs,
    discriminative_param_groups,
    freeze,
    frozen,
    layer_groups,
    linear_warmup_lr,
    linear_warmup_schedule,
    make_groups,
    slanted_triangular_lr,
    slanted_triangular_schedule,
    summary_table,
    trainable_summary,
    unfreeze_top,
)


class TinyNet(nn.Module):
    """embeddings + a ModuleList of layers + head: the shape of course_lib's BERT/GPT classifiers."""

    def __init__(self, vocab=11, dim=4, n_layers=3, n_classes=2):
        super().__init__()
        self.embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))
        self.head = nn.Linear(dim, n_classes)

    def forward(self, ids):
        x = self.embeddings(ids)  # [batch, tokens, dim]
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.head(x.mean(dim=1))  # [batch, classes]


def tiny(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = TinyNet().to(dtype)
    return model, layer_groups(model)


def batch_loss(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 11, (5, 6), generator=g)  # [batch, tokens]
    labels = torch.randint(0, 2, (5,), generator=g)
    return nn.functional.cross_entropy(model(ids), labels)


# ---------------------------------------------------------------- layer groups


def test_layer_groups_order_and_coverage():
    model, groups = tiny()
    assert [g.name for g in groups] == ["embeddings", "layers.0", "layers.1", "layers.2", "head"]
    assert groups[1].params == list(model.layers[0].parameters())
    assert groups[-1].params == list(model.head.parameters())
    assert sum(g.num_params for g in groups) == sum(p.numel() for p in model.parameters())


def test_layer_groups_dotted_paths_and_several_head_modules():
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = TinyNet()
            self.final_norm = nn.LayerNorm(4)
            self.classifier = nn.Linear(4, 3)

    model = Wrapped()
    groups = layer_groups(model, "body.embeddings", "body.layers", head=("body.head", "final_norm", "classifier"))
    assert [g.name for g in groups][-2:] == ["layers.2", "head"]
    assert len(groups[-1].params) == 6  # body.head (2) + final_norm (2) + classifier (2)
    with pytest.raises(ValueError, match="final_norm"):  # left out of every group
        layer_groups(model, "body.embeddings", "body.layers", head="classifier")


def test_layer_groups_bad_attributes():
    model = TinyNet()
    with pytest.raises(ValueError, match="'blocks'.*children"):
        layer_groups(model, layers="blocks")
    with pytest.raises(ValueError, match="ModuleList"):
        layer_groups(model, layers="head")


def test_make_groups_from_modules_params_and_dict():
    model = TinyNet()
    groups = make_groups([model.embeddings, list(model.layers.parameters()), model.head.weight, model.head.bias])
    assert [g.name for g in groups] == ["group_0", "group_1", "group_2", "group_3"]
    assert groups[2].params == [model.head.weight]
    named = make_groups({"bottom": model.embeddings, "rest": [model.layers, model.head]})
    assert [g.name for g in named] == ["bottom", "rest"]
    assert len(named[1].params) == 8


def test_make_groups_tied_weight_belongs_to_lower_group():
    embed = nn.Embedding(7, 3)
    lm_head = nn.Linear(3, 7)
    lm_head.weight = embed.weight  # GPT-style weight tying
    groups = make_groups({"embeddings": embed, "lm_head": lm_head})
    assert groups[0].params == [embed.weight] and groups[1].params == [lm_head.bias]
    torch.optim.SGD(discriminative_param_groups(groups, lr=0.1))  # torch rejects a parameter in two groups


def test_make_groups_bad_input():
    model = TinyNet()
    with pytest.raises(ValueError, match="at least one"):
        make_groups([])
    with pytest.raises(ValueError, match="'empty' has no parameters"):
        make_groups({"head": model.head, "empty": nn.ReLU()})
    with pytest.raises(ValueError, match="2 names for 1 groups"):
        make_groups([model.head], names=["a", "b"])
    with pytest.raises(ValueError, match="int"):
        make_groups([3])


# ---------------------------------------------------------------- freezing


def test_frozen_parameters_get_no_gradient_and_do_not_move():
    model, groups = tiny()
    freeze(groups[0], groups[1])
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    batch_loss(model).backward()
    for p in groups[0].params + groups[1].params:
        assert p.grad is None
    for g in groups[2:]:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.params)
    optimizer.step()  # AdamW skips parameters without .grad: no update, no weight decay
    moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    frozen_count = len(groups[0].params) + len(groups[1].params)
    assert moved == [False] * frozen_count + [True] * (len(moved) - frozen_count)


def test_freeze_drops_stale_gradient():
    model, groups = tiny()
    batch_loss(model).backward()
    assert model.head.weight.grad is not None
    freeze(groups[-1])
    assert model.head.weight.grad is None and not model.head.weight.requires_grad


def test_unfreeze_top():
    model, groups = tiny()
    for n in range(len(groups) + 1):
        unfreeze_top(groups, n)
        flags = [all(p.requires_grad for p in g.params) for g in groups]
        assert flags == [False] * (len(groups) - n) + [True] * n
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        unfreeze_top(groups, 6)


def test_frozen_context_restores_flags():
    model, groups = tiny()
    freeze(groups[1])
    with frozen(*groups):
        assert not any(p.requires_grad for p in model.parameters())
    assert [all(p.requires_grad for p in g.params) for g in groups] == [True, False, True, True, True]


def test_trainable_summary_and_table():
    model, groups = tiny()
    unfreeze_top(groups, 3)
    model.layers[1].bias.requires_grad_(False)
    rows = trainable_summary(groups)
    assert [(r.name, r.trainable, r.total, r.state) for r in rows] == [
        ("embeddings", 0, 44, "frozen"),
        ("layers.0", 0, 20, "frozen"),
        ("layers.1", 16, 20, "partly"),
        ("layers.2", 20, 20, "trainable"),
        ("head", 10, 10, "trainable"),
    ]
    table = summary_table(groups).splitlines()
    assert table[1].split() == ["head", "trainable", "10", "10"]  # top group first
    assert table[-1].split() == ["all", "40.4%", "46", "114"]


# ---------------------------------------------------------------- gradual unfreezing


def test_gradual_unfreezing_order_per_epoch():
    model, groups = tiny()
    unfreezer = GradualUnfreezer(groups)
    assert all(p.requires_grad for p in model.parameters())  # nothing happens before the first step
    expected = [
        ["head"],
        ["layers.2", "head"],
        ["layers.1", "layers.2", "head"],
        ["layers.0", "layers.1", "layers.2", "head"],
        ["embeddings", "layers.0", "layers.1", "layers.2", "head"],
        ["embeddings", "layers.0", "layers.1", "layers.2", "head"],
    ]
    for epoch, names in enumerate(expected):
        assert unfreezer.step(epoch) == names
        assert [g.name for g in groups if all(p.requires_grad for p in g.params)] == names
        assert not any(p.requires_grad for g in groups if g.name not in names for p in g.params)
    assert GradualUnfreezer(groups, start=2, per_epoch=2).plan(3) == [expected[1], expected[3], expected[4]]


def test_gradual_unfreezing_bad_input():
    _, groups = tiny()
    with pytest.raises(ValueError, match="at least one"):
        GradualUnfreezer([])
    with pytest.raises(ValueError, match="start"):
        GradualUnfreezer(groups, start=0)
    with pytest.raises(ValueError, match="per_epoch"):
        GradualUnfreezer(groups, per_epoch=0)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        GradualUnfreezer(groups).step(-1)


# ---------------------------------------------------------------- discriminative learning rates


def test_discriminative_lrs_chain():
    lrs = discriminative_lrs(5, lr=1e-3)
    assert lrs[-1] == 1e-3
    for lower, upper in zip(lrs, lrs[1:]):
        assert lower == pytest.approx(upper / 2.6, rel=1e-12)
    assert lrs[0] == pytest.approx(1e-3 / 2.6**4, rel=1e-12)
    assert discriminative_lrs(3, lr=0.5, decay=1.0) == [0.5, 0.5, 0.5]


def test_discriminative_param_groups_in_optimizer_and_update_size():
    model, groups = tiny()
    optimizer = torch.optim.SGD(discriminative_param_groups(groups, lr=0.1, weight_decay=0.0))
    assert [pg["name"] for pg in optimizer.param_groups] == [g.name for g in groups]
    assert [pg["lr"] for pg in optimizer.param_groups] == pytest.approx([0.1 / 2.6**k for k in (4, 3, 2, 1, 0)])
    before = [[p.detach().clone() for p in g.params] for g in groups]
    batch_loss(model).backward()
    optimizer.step()  # plain SGD: w <- w - lr_group * grad, so each group's step is its own lr times its grad
    for g, lr, old_params in zip(groups, discriminative_lrs(5, 0.1), before):
        for p, old in zip(g.params, old_params):
            torch.testing.assert_close(old - p.detach(), lr * p.grad)


def test_discriminative_bad_input():
    _, groups = tiny()
    with pytest.raises(ValueError, match="decay must be >= 1"):
        discriminative_param_groups(groups, lr=0.1, decay=0.8)
    with pytest.raises(ValueError, match="lr must be > 0"):
        discriminative_lrs(3, lr=0.0)
    with pytest.raises(ValueError, match="at least one"):
        discriminative_param_groups([], lr=0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        discriminative_param_groups(groups, lr=0.1, weight_decay=-1.0)


# ---------------------------------------------------------------- schedules


def test_slanted_triangular_known_steps():
    total, peak, ratio = 1000, 0.01, 32
    lr = [slanted_triangular_lr(t, total, lr_max=peak) for t in range(total + 1)]
    assert lr[0] == pytest.approx(peak / ratio)
    assert lr[50] == pytest.approx(peak * (1 + 0.5 * (ratio - 1)) / ratio)  # halfway up
    assert max(range(total + 1), key=lr.__getitem__) == 100 and lr[100] == pytest.approx(peak)  # cut = 1000 * 0.1
    assert lr[550] == pytest.approx(peak * (1 + 0.5 * (ratio - 1)) / ratio)  # halfway down
    assert lr[total] == pytest.approx(peak / ratio)
    assert slanted_triangular_lr(total + 7, total, lr_max=peak) == pytest.approx(peak / ratio)
    # the climb is 9x steeper than the decay: (1 - cut_frac) / cut_frac
    assert (lr[1] - lr[0]) / (lr[100] - lr[101]) == pytest.approx(9.0)


def test_slanted_triangular_when_total_times_cut_frac_is_not_whole():
    total, cut = 105, 10  # floor(10.5)
    lr = [slanted_triangular_lr(t, total) for t in range(total + 1)]
    assert max(range(total + 1), key=lr.__getitem__) == cut
    assert min(lr) == pytest.approx(1 / 32) and lr[-1] == pytest.approx(1 / 32)  # never below lr_max / ratio
    assert slanted_triangular_lr(0, 5) == 1.0  # cut = floor(0.5) = 0: no climb, start at the peak


def test_linear_warmup_known_steps():
    lr = [linear_warmup_lr(t, 100, warmup_steps=10, lr_max=2e-5) for t in range(101)]
    assert lr[0] == 0.0 and lr[5] == pytest.approx(1e-5) and lr[10] == pytest.approx(2e-5)
    assert lr[55] == pytest.approx(1e-5) and lr[100] == 0.0
    assert max(range(101), key=lr.__getitem__) == 10
    assert linear_warmup_lr(0, 100, warmup_steps=0) == 1.0
    assert linear_warmup_lr(150, 100, warmup_steps=10) == 0.0


def test_schedulers_scale_each_parameter_group():
    _, groups = tiny()
    for make, fn in [
        (lambda opt: slanted_triangular_schedule(opt, 50), lambda t: slanted_triangular_lr(t, 50)),
        (lambda opt: linear_warmup_schedule(opt, 50, warmup_steps=5), lambda t: linear_warmup_lr(t, 50, 5)),
    ]:
        optimizer = torch.optim.SGD(discriminative_param_groups(groups, lr=0.1))
        scheduler = make(optimizer)
        peaks = discriminative_lrs(len(groups), 0.1)
        for step in range(51):
            current = [pg["lr"] for pg in optimizer.param_groups]
            assert current == pytest.approx([peak * fn(step) for peak in peaks], abs=1e-15)
            optimizer.step()
            scheduler.step()


@pytest.mark.parametrize("cut_frac", [0.0, 1.0, -0.1, 1.5])
def test_slanted_triangular_rejects_cut_frac(cut_frac):
    with pytest.raises(ValueError, match=r"cut_frac must be in \(0, 1\)"):
        slanted_triangular_lr(0, 100, cut_frac=cut_frac)


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="ratio"):
        slanted_triangular_lr(0, 100, ratio=0.5)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        slanted_triangular_lr(0, 0)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        linear_warmup_lr(0, 0, warmup_steps=0)
    with pytest.raises(ValueError, match="step must be >= 0"):
        linear_warmup_lr(-1, 10, warmup_steps=2)
    with pytest.raises(ValueError, match="warmup_steps"):
        linear_warmup_lr(0, 10, warmup_steps=10)
    with pytest.raises(ValueError, match="lr_max"):
        slanted_triangular_lr(0, 10, lr_max=0.0)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="cut_frac"):  # at construction, not at the first step
        slanted_triangular_schedule(optimizer, 100, cut_frac=2.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        linear_warmup_schedule(optimizer, 100, warmup_steps=-1)


# ---------------------------------------------------------------- L2-SP


def test_l2sp_zero_at_pretrained_point():
    _, groups = tiny()
    l2sp = L2SP(body=groups[:-1], head=groups[-1], alpha=0.1, beta=0.0)
    assert l2sp.penalty().item() == 0.0
    assert l2sp.distances() == {g.name: 0.0 for g in groups[:-1]}
    with_head = L2SP(body=groups[:-1], head=groups[-1], alpha=0.1, beta=0.2)
    head_norm2 = sum((p.detach().double() ** 2).sum().item() for p in groups[-1].params)
    assert with_head().item() == pytest.approx(0.1 * head_norm2, rel=1e-6)  # beta/2 ||w_head||^2, body term 0


def test_l2sp_closed_form_and_gradient_after_perturbation():
    model, groups = tiny(dtype=torch.float64)
    alpha, beta = 0.3, 0.05
    l2sp = L2SP(body=groups[:-1], head=groups[-1], alpha=alpha, beta=beta)
    start = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(2)
    deltas = [0.1 * torch.randn_like(p) for p in model.parameters()]
    with torch.no_grad():
        for p, d in zip(model.parameters(), deltas):
            p.add_(d)
    body, head = deltas[:-2], list(model.head.parameters())
    expected = alpha / 2 * sum((d**2).sum() for d in body) + beta / 2 * sum((w**2).sum() for w in head)
    penalty = l2sp.penalty()
    torch.testing.assert_close(penalty, expected.detach())
    penalty.backward()
    params = list(model.parameters())
    for p, w0 in zip(params[:-2], start[:-2]):
        torch.testing.assert_close(p.grad, alpha * (p.detach() - w0))  # towards w0, no alpha * w decay term
    for p in params[-2:]:
        torch.testing.assert_close(p.grad, beta * p.detach())
    distances = l2sp.distances()
    assert distances["layers.1"] == pytest.approx(math.sqrt(sum((d**2).sum().item() for d in deltas[3:5])))
    norm0 = math.sqrt(sum((w0**2).sum().item() for w0 in start[3:5]))
    assert l2sp.distances(relative=True)["layers.1"] == pytest.approx(distances["layers.1"] / norm0)


def test_l2sp_rejects_weight_decay_on_body():
    model, groups = tiny()
    l2sp = L2SP(body=groups[:-1], head=groups[-1], alpha=0.1, beta=0.01)
    with pytest.raises(ValueError, match="no weight decay on the pretrained body"):
        l2sp.check_optimizer(torch.optim.AdamW(model.parameters()))  # AdamW's default weight_decay is 0.01
    param_groups = discriminative_param_groups(groups, lr=1e-3, weight_decay=0.0)
    param_groups[-1]["weight_decay"] = 0.01  # decay on the head only is allowed
    l2sp.check_optimizer(torch.optim.AdamW(param_groups))
    param_groups[1]["weight_decay"] = 0.01
    with pytest.raises(ValueError, match="'layers.0'"):
        l2sp.check_optimizer(torch.optim.AdamW(param_groups))


def test_l2sp_keeps_body_closer_to_pretrained_weights():
    distances = {}
    for alpha in (0.0, 5.0):
        model, groups = tiny()
        l2sp = L2SP(body=groups[:-1], head=groups[-1], alpha=alpha, beta=0.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(20):
            optimizer.zero_grad()
            (batch_loss(model, seed=step) + l2sp()).backward()
            optimizer.step()
        distances[alpha] = l2sp.distances()
    for name in distances[0.0]:
        assert 0 < distances[5.0][name] < distances[0.0][name]


def test_l2sp_bad_input():
    model, groups = tiny()
    with pytest.raises(ValueError, match="alpha and beta must be >= 0"):
        L2SP(groups[:-1], groups[-1], alpha=-0.1, beta=0.01)
    with pytest.raises(ValueError, match="alpha and beta must be >= 0"):
        L2SP(groups[:-1], groups[-1], alpha=0.1, beta=-1.0)
    with pytest.raises(ValueError, match="body needs at least one"):
        L2SP([], groups[-1], alpha=0.1, beta=0.01)
    with pytest.raises(ValueError, match="share parameters"):
        L2SP(groups, groups[-1], alpha=0.1, beta=0.01)
    with pytest.raises(ValueError, match="at least one"):
        WeightSnapshot([])
    assert L2SP(model.layers, None, alpha=1.0, beta=0.0).penalty().item() == 0.0  # a module is one group


def test_gradual_unfreezing_inside_fit_follows_its_plan():
    """fit's on_epoch_start and GradualUnfreezer agree on epoch numbering: the groups that train are the plan's."""
    from course_lib.models.outputs import ModelOutput
    from course_lib.training.loop import fit
    from course_lib.transfer import GradualUnfreezer, make_groups

    torch.manual_seed(0)
    layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = layers

        def forward(self, features):
            for layer in self.layers:
                features = layer(features)
            return ModelOutput(logits=features[:, :2])

    model = Stack()
    groups = make_groups(list(layers), names=["bottom", "middle", "top"])
    unfreezer = GradualUnfreezer(groups, start=1, per_epoch=1)
    before = [layer.weight.detach().clone() for layer in layers]
    batches = [{"features": torch.randn(8, 4), "labels": torch.randint(0, 2, (8,))}]
    trained = []
    fit(model, batches, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, progress=False,
        on_epoch_start=lambda e: trained.append(unfreezer.step(e)))
    assert trained == unfreezer.plan(2) == [["top"], ["middle", "top"]]
    assert torch.equal(layers[0].weight, before[0]), "the bottom group was never in the plan: it must not move"
    assert not torch.equal(layers[1].weight, before[1]) and not torch.equal(layers[2].weight, before[2])


# ---------------------------------------------------------------- new layers on cached features, chosen on validation

def separable(n, seed):
    """Features whose first coordinate decides the label: a problem a head can learn in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 6, generator=g)  # [n, dim]
    return features, (features[:, 0] > 0).long()


def test_top_layers_shapes_and_bad_input():
    from course_lib.transfer.heads import TopLayers

    head = TopLayers(6, hidden=5)
    assert head(torch.zeros(3, 6)).logits.shape == (3, 2)
    assert sum(p.numel() for p in head.parameters()) == 6 * 5 + 5 + 5 * 2 + 2
    with pytest.raises(ValueError, match="n_classes >= 2"):
        TopLayers(6, n_classes=1)


def test_choose_head_keeps_the_lowest_validation_loss_and_returns_that_very_head():
    from course_lib.training.loop import classifier_report
    from course_lib.transfer import LinearProbe, feature_batches
    from course_lib.transfer.heads import choose_head, train_head

    train, valid = separable(64, seed=1), separable(64, seed=2)
    head, choice = choose_head(lambda: LinearProbe(6), train, valid, lrs=(1e-4, 1e-1), max_epochs=12)
    assert set(choice.curves) == {1e-4, 1e-1} and all(len(c) == 12 for c in choice.curves.values())
    best = min(min(c) for c in choice.curves.values())
    assert choice.valid_loss == best and choice.curves[choice.lr][choice.epochs - 1] == best
    assert choice.lr == 1e-1, "a rate 1,000x too small barely moves in 12 epochs"
    report = classifier_report(head, feature_batches(*valid, batch_size=64))
    assert report["loss"] == pytest.approx(best, rel=1e-5), "the returned head is the compared one, not a retrain"
    assert report["accuracy"] > 0.8
    torch.manual_seed(0)
    again = LinearProbe(6)
    train_head(again, *train, epochs=choice.epochs, lr=choice.lr)
    torch.testing.assert_close(again.linear.weight, head.linear.weight)
    with pytest.raises(ValueError, match="at least one learning rate"):
        choose_head(lambda: LinearProbe(6), train, valid, lrs=())


def test_classifier_report_loss_is_the_mean_cross_entropy():
    from course_lib.models.outputs import ModelOutput
    from course_lib.training.loop import classifier_report, predict

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0))

        def forward(self, features):
            return ModelOutput(logits=features * self.scale)

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    batches = [{"features": logits[:2], "labels": labels[:2]}, {"features": logits[2:], "labels": labels[2:]}]
    report = classifier_report(Fixed(), batches)
    assert report["loss"] == pytest.approx(nn.functional.cross_entropy(logits, labels).item())
    assert report["accuracy"] == pytest.approx(2 / 3) and report["recall"] == pytest.approx(0.5)
    assert predict(Fixed(), batches)[1].tolist() == [0, 1, 0]


def test_history_epoch_mean_loss_averages_each_epochs_steps():
    from course_lib.models.outputs import ModelOutput
    from course_lib.training.loop import fit

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(2))

        def forward(self, features):
            return ModelOutput(logits=self.bias.expand(len(features), 2))

    batches = [{"features": torch.zeros(n, 1), "labels": torch.zeros(n, dtype=torch.long)} for n in (4, 2, 3)]
    model = Constant()
    history = fit(model, batches, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=2, progress=False)
    assert history.epoch_ends == [3, 6]
    assert history.epoch_mean_loss() == pytest.approx([math.log(2)] * 2)
