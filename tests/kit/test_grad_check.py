"""grad_check's diagnosis: with a layer broken on purpose (in-process, no answers here), the
line before FAILED names the piece at fault; an error in a piece is one line, not a traceback.
The typical mistakes of the README's table are injected by tests/kit/test_grad_check_mistakes.py."""

import types

import numpy as np
import pytest
from conftest import CONFIG_DIR

import convolutions
import grad_check
from conv_layer import ConvLayer
from fc_layer import FCLayer
from maxpool_layer import MaxPoolLayer


def run(config, capsys):
    status = grad_check.main([str(CONFIG_DIR / config)])
    lines = capsys.readouterr().out.strip().splitlines()
    unwritten = [line for line in lines if line.startswith("not implemented yet:")]
    if unwritten:  # the student kit before its pieces are written
        pytest.skip(unwritten[0])
    assert lines[-1] == ("PASSED" if status == 0 else "FAILED")
    return status, lines


def faults(lines):
    return [line.removeprefix("most likely at fault: ") for line in lines if line.startswith("most likely at fault:")]


def scaled(method, index, factor):
    """A ComputeDown whose output `index` (0 input derivative, 1 dw, 2 db) is `factor` times the right one."""
    def broken(self, dC_by_doutputs, outputs, inputs):
        result = list(method(self, dC_by_doutputs, outputs, inputs))
        if result[index] is not None:
            result[index] = result[index] * factor
        return tuple(result)
    return broken


def test_a_weight_derivative_averaged_twice_is_named_with_the_batch_hint(monkeypatch, capsys):
    monkeypatch.setattr(FCLayer, "ComputeDown", scaled(FCLayer.ComputeDown, 1, 1 / grad_check.EXAMPLES))
    status, lines = run("logreg.yaml", capsys)
    assert status == 1
    assert faults(lines) == [f"FCLayer.ComputeDown (fc_layer.py): the weight derivative (dw) of layer 'output' "
                             f"(1/{grad_check.EXAMPLES} of the right one: give the sum over the batch, the kit "
                             "divides by the batch size)"]


def test_a_wrong_input_derivative_is_blamed_on_the_layer_above_the_wrong_weights(monkeypatch, capsys):
    # net_1layer: fc1's weights come out wrong, but the fault is the output layer's input derivative.
    monkeypatch.setattr(FCLayer, "ComputeDown", scaled(FCLayer.ComputeDown, 0, 0.99))
    status, lines = run("net_1layer.yaml", capsys)
    assert status == 1 and "FAILED: gradient for fc1_w" in "\n".join(lines)
    assert faults(lines) == ["FCLayer.ComputeDown (fc_layer.py): the input derivative (dC_by_dinputs) of layer "
                             "'output'"]


def test_a_wrong_pooling_derivative_is_blamed_on_the_pooling_layer(monkeypatch, capsys):
    monkeypatch.setattr(MaxPoolLayer, "ComputeDown", scaled(MaxPoolLayer.ComputeDown, 0, 1.5))
    status, lines = run("convnet_gradcheck_pad0.yaml", capsys)
    assert status == 1
    assert faults(lines) == ["MaxPoolLayer.ComputeDown (maxpool_layer.py): the input derivative (dC_by_dinputs) "
                             "of layer 'maxpool1'"]


def test_a_wrong_forward_pass_is_named_as_such_not_as_its_derivatives(monkeypatch, capsys):
    original = ConvLayer.ComputeUp
    # Method 2's outputs only (the student's piece), 1 % too large.
    monkeypatch.setattr(ConvLayer, "ComputeUp",
                        lambda self, inputs: original(self, inputs) * (1.01 if self.conv_method_ == 2 else 1.0))
    status, lines = run("convnet_gradcheck_stride2.yaml", capsys)
    assert status == 1
    assert [fault.split(":")[0] for fault in faults(lines)] == ["ConvLayer.ComputeUp (conv_layer.py)"] * 2
    assert "the forward pass of layer 'conv1' gives wrong outputs" in faults(lines)[0]


def test_a_forward_pass_wrong_with_a_matching_backward_pass_still_fails(monkeypatch, capsys):
    # Doubled weights and biases, and derivatives to match: the gradients agree, the layer is wrong.
    up, down = FCLayer.ComputeUp, FCLayer.ComputeDown

    def doubled_up(self, inputs):
        self.w_ *= 2  # in place: the check's views of w_ and b_ stay theirs
        self.b_ *= 2
        try:
            return up(self, inputs)
        finally:
            self.w_ /= 2
            self.b_ /= 2

    def doubled_down(self, dC_by_doutputs, outputs, inputs):
        d_in, dw, db = down(self, dC_by_doutputs, outputs, inputs)
        return d_in, 2 * dw, 2 * db

    monkeypatch.setattr(FCLayer, "ComputeUp", doubled_up)
    monkeypatch.setattr(FCLayer, "ComputeDown", doubled_down)
    status, lines = run("logreg.yaml", capsys)
    assert status == 1 and not any(line.startswith("FAILED: gradient") for line in lines)
    assert faults(lines) == ["FCLayer.ComputeUp (fc_layer.py): the forward pass of layer 'output' gives wrong "
                             "outputs (the derivatives are checked against them: fix it first)"]


def test_an_error_in_a_piece_is_one_line_with_the_piece_its_line_and_the_shapes(monkeypatch, capsys):
    real = convolutions.convolve

    def convolve(inputs, weights, padding):  # the input derivative's call (N, K, 1, H', W') gets padding 0
        return real(inputs, weights, padding=0 if inputs.shape[1] > 1 and inputs.shape[2] == 1 else padding)
    monkeypatch.setattr(convolutions, "convolve", convolve)
    status, lines = run("convnet_gradcheck_pad0.yaml", capsys)
    assert status == 1 and len(lines) >= 2
    line = lines[-2]
    assert line.startswith("error in ConvLayer.ComputeDown (conv_layer.py, line ")
    assert "layer 'conv3': ValueError: convolve: kernel larger than the padded input" in line
    assert line.endswith("; shapes: deriv (3, 6, 2, 2), w (6, 4, 3, 3)")


def test_none_for_a_hidden_layer_is_named_before_the_layer_below_chokes_on_it(monkeypatch, capsys):
    down = ConvLayer.ComputeDown
    monkeypatch.setattr(ConvLayer, "ComputeDown", lambda self, d, o, i: (None,) + tuple(down(self, d, o, i)[1:]))
    status, lines = run("convnet_gradcheck_deep.yaml", capsys)
    assert status == 1
    assert faults(lines) == ["ConvLayer.ComputeDown (conv_layer.py): layer 'conv2' is not the input layer but "
                             "returns no dC_by_dinputs (None): the layers below need it"]


def test_an_error_outside_the_layers_is_not_hidden(monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("a bug of the kit")
    monkeypatch.setattr(grad_check, "random_batch", broken)
    with pytest.raises(RuntimeError, match="a bug of the kit"):
        grad_check.main([str(CONFIG_DIR / "logreg.yaml")])


@pytest.mark.parametrize("classes", [10, 100, 2])
def test_the_check_uses_a_batch_with_different_targets(classes):
    class Net:
        settings_ = types.SimpleNamespace(input_image_size_y=16, input_image_size_x=16, input_num_channels=3)
        layer_ = [types.SimpleNamespace(num_channels_=classes)]  # the output layer: one unit per class
    inputs, targets = grad_check.random_batch(Net(), np.random.default_rng(0))
    assert inputs.shape == (grad_check.EXAMPLES, 768) and grad_check.EXAMPLES >= 2
    assert targets.shape == (grad_check.EXAMPLES, classes)
    assert len(set(targets.argmax(axis=1))) == min(classes, grad_check.EXAMPLES)
