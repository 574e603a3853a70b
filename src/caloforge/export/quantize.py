"""8-bit hidden layers for the fully connected generators: the same model in a faster ONNX Runtime graph.

The hidden layers of a fully connected generator (``generator_hidden``; the shipped defaults: 140 -> 256 ->
256 -> 121) take most of the fast simulation's sampling time. :func:`quantize_hidden_layers` rewrites the
float32 export (:func:`caloforge.export.export_onnx`) so that they run as ONNX Runtime's ``QGemm`` (8-bit
inputs and weights, exact 32-bit integer sums, float32 out; VNNI instructions where the CPU has them):

* the noise enters in 8 bits with the fixed scale :data:`caloforge.models.inputs.NOISE_BOUND` / 127
  (:func:`~caloforge.models.inputs.gaussian_noise` never goes beyond it: nothing is clipped); the six
  normalised conditions stay float32, in a product of their own added to the noise's;
* each hidden activation, after its ReLU, in unsigned 8 bits with the scale of its largest value on
  calibration rows / 255 (the ReLU becomes the quantisation's saturation at zero; larger values are clipped);
* weights in 7 of the signed 8 bits (:data:`WEIGHT_LIMIT`: the same sums on CPUs with and without VNNI) with
  one scale per output (its largest weight / 63), biases in 32 bits at the scale of the product;
* the output layer, the mean shower, the energy model and the rescaling to the drawn energy stay float32.

The scales are numbers fixed in the graph: a shower does not depend on the other rows of its batch (ONNX
Runtime's dynamic quantisation takes the scale of each call's activations, which would).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from caloforge.detector.conditions import PARTICLES, PARTICLES_BY_PDG, compute_conditions
from caloforge.models.inputs import N_CONDITIONS, NOISE_BOUND, gaussian_noise

if TYPE_CHECKING:
    import onnx

CALIBRATION_ROWS = 50_000
"""Default number of (noise, conditions) rows whose hidden activations set the 8-bit scales."""
_MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib operators (QGemm)


class NotQuantizableError(ValueError):
    """The graph is not a fully connected generator's export."""


def calibration_conditions(particle: str, n: int, *, seed: int = 0) -> np.ndarray:
    """Conditions (n', 6) of ``n`` particle-gun tracks of ``particle`` (0-3 GeV/c, the barrel's directions)
    at the crystal front faces, those that reach the barrel: the calibration rows' conditions."""
    from caloforge.detector.transport import propagate_to_front
    from caloforge.detector.gun import gun_momenta_gev

    pdg = PARTICLES[particle].pdg
    momenta = gun_momenta_gev(n, seed=seed)  # (n, 3) GeV/c, from the origin
    charge = np.full(n, PARTICLES_BY_PDG[pdg].charge, dtype=np.float64)
    front = propagate_to_front(np.zeros((n, 3)), momenta, charge)
    h = front.hit
    return compute_conditions(front.position_cm[h], front.momentum_gev[h], front.theta_index[h], front.phi_index[h])


def _consumers(graph) -> dict[str, list]:
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _find_hidden_layers(model: onnx.ModelProto) -> tuple:
    """The generator's Concat(noise, conditions) and its hidden (Gemm, Relu) pairs (the output Gemm follows)."""
    graph = model.graph
    users = _consumers(graph)
    producers = {out: node for node in graph.node for out in node.output}
    gemms = [n for n in graph.node if n.op_type == "Gemm" and n.name.startswith("/generator/")]
    if len(gemms) < 2:
        raise NotQuantizableError("8-bit export needs a fully connected generator (generator_hidden)")
    layers = []
    for gemm, following in zip(gemms[:-1], gemms[1:]):
        relus = users.get(gemm.output[0], [])
        if len(relus) != 1 or relus[0].op_type != "Relu" or [n.name for n in users.get(relus[0].output[0], [])] != [
            following.name
        ]:
            raise NotQuantizableError(f"{gemm.name}: not a hidden layer (Gemm -> Relu -> Gemm)")
        layers.append((gemm, relus[0]))
    concat = producers.get(gemms[0].input[0])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2 or len(users[concat.output[0]]) != 1:
        raise NotQuantizableError("the generator's first layer does not take Concat(noise, conditions)")
    for node in gemms:
        attrs = {a.name: a for a in node.attribute}
        if "transB" not in attrs or attrs["transB"].i != 1 or any(
            k in attrs and attrs[k].f != 1.0 for k in ("alpha", "beta")
        ):
            raise NotQuantizableError(f"{node.name}: expected a Gemm with transB=1, alpha=beta=1")
    return concat, layers


def _activation_maxima(
    model: onnx.ModelProto, names: list[str], noise: np.ndarray, cond: np.ndarray, batch: int = 8192
) -> list[float]:
    """The largest value of each named tensor of the float graph over the calibration rows."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    maxima = np.zeros(len(names))
    for start in range(0, len(cond), batch):
        feed = {"noise": noise[start : start + batch], "cond": cond[start : start + batch]}
        values = session.run(names, feed)
        maxima = np.maximum(maxima, [float(v.max()) for v in values])
    return [float(m) for m in maxima]


WEIGHT_LIMIT = 63
"""The largest integer weight: 7 bits. The AVX2 kernels of ONNX Runtime (x86 CPUs without VNNI) add pairs of
8-bit products in 16 bits, where two 255 x 127 products would saturate; 255 x 63 pairs cannot, so every x86 CPU
sums the same integers (ONNX Runtime's ``reduce_range``)."""


def _int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out, in) -> int8 weights within +-:data:`WEIGHT_LIMIT` and one float32 scale per output row."""
    scale = np.maximum(np.abs(w).max(axis=1), 1e-30) / WEIGHT_LIMIT
    q = np.clip(np.rint(w / scale[:, None]), -WEIGHT_LIMIT, WEIGHT_LIMIT).astype(np.int8)
    return q, scale.astype(np.float32)


def quantize_hidden_layers(
    model: onnx.ModelProto, noise: np.ndarray, conditions: np.ndarray, *, calibration_note: str = ""
) -> onnx.ModelProto:
    """A copy of a float32 export (``onnx.ModelProto``) whose generator's hidden layers run in 8 bits.

    Args:
        model: the export of a model with a fully connected generator.
        noise: calibration noise (N, noise_dim), float32, as :func:`caloforge.models.inputs.gaussian_noise`.
        conditions: calibration conditions (N, 6), raw (as the graph's ``cond`` input).
        calibration_note: where the calibration rows came from, kept in the metadata.

    Raises:
        NotQuantizableError: the graph is not a fully connected generator's export (convolutional generator,
            several particle types).
    """
    import onnx
    from onnx import helper, numpy_helper

    meta = {p.key: p.value for p in model.metadata_props}
    if "quantization" in meta:
        raise NotQuantizableError("this graph is quantised already")
    if "particle" in {i.name for i in model.graph.input}:
        raise NotQuantizableError("8-bit export is for models of one particle type")
    concat, layers = _find_hidden_layers(model)
    relu_outputs = [relu.output[0] for _, relu in layers]
    maxima = _activation_maxima(model, relu_outputs, noise.astype(np.float32), conditions.astype(np.float32))
    weights = {t.name: t for t in model.graph.initializer}

    def const(name: str, value: np.ndarray) -> str:
        new_init.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    new_init: list = []
    replaced: dict[str, list] = {}  # node name -> the nodes in its place
    drop = {concat.name}
    noise_in, cond_in = concat.input
    scales = []
    for k, (gemm, _) in enumerate(layers):
        w = numpy_helper.to_array(weights[gemm.input[1]]).astype(np.float64)
        b = numpy_helper.to_array(weights[gemm.input[2]]).astype(np.float64)
        p = f"{gemm.name}/int8"
        if k == 0:  # noise in 8 bits (zero point 128), the conditions in float32
            w_noise, w_cond = w[:, :-N_CONDITIONS], w[:, -N_CONDITIONS:]
            a_scale, a_zero, a_in = NOISE_BOUND / 127.0, np.uint8(128), noise_in
            w = w_noise
        else:  # the previous ReLU's output, unsigned: the quantisation's floor at zero is the ReLU
            prev_relu = layers[k - 1][1]
            a_scale, a_zero, a_in = max(maxima[k - 1], 1e-30) / 255.0, np.uint8(0), layers[k - 1][0].output[0]
            drop.add(prev_relu.name)
        wq, w_scale = _int8_rows(w)
        bias = np.rint(b / (a_scale * w_scale.astype(np.float64)))
        if np.abs(bias).max() >= 2**31:
            raise NotQuantizableError(f"{gemm.name}: biases too large for 32 bits at the product's scale")
        bias = bias.astype(np.int32)
        a_scale_name = const(f"{p}/a_scale", np.float32(a_scale))
        a_zero_name = const(f"{p}/a_zero", a_zero)
        nodes = [
            helper.make_node("QuantizeLinear", [a_in, a_scale_name, a_zero_name], [f"{p}/a"], name=f"{p}/quantize"),
            helper.make_node(
                "QGemm",
                [f"{p}/a", a_scale_name, a_zero_name, const(f"{p}/w", wq), const(f"{p}/w_scale", w_scale),
                 const(f"{p}/w_zero", np.zeros(len(w_scale), dtype=np.int8)), const(f"{p}/bias", bias)],
                [f"{p}/y" if k == 0 else gemm.output[0]], name=f"{p}/gemm", domain=_MS_DOMAIN, transB=1,
            ),
        ]
        if k == 0:
            nodes.append(helper.make_node(
                "Gemm", [cond_in, const(f"{p}/w_cond", w_cond.astype(np.float32)), f"{p}/y"], [gemm.output[0]],
                name=f"{p}/conditions", transB=1,
            ))
        replaced[gemm.name] = nodes
        scales.append(float(a_scale))
    # the last hidden ReLU stays (the float output layer takes its float output)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for node in model.graph.node:
        if node.name in drop:
            continue
        out.graph.node.extend(replaced.get(node.name, [node]))
    used = {i for node in out.graph.node for i in node.input}
    kept = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + new_init)
    if not any(o.domain == _MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    entry = out.metadata_props.add()
    entry.key = "quantization"
    entry.value = json.dumps({
        "int8_layers": [g.name for g, _ in layers],
        "input_scales": scales,
        "calibration_rows": int(len(conditions)),
        "calibration": calibration_note,
    })
    onnx.checker.check_model(out)
    return out


def calibration_rows(particle: str, noise_dim: int, n: int = CALIBRATION_ROWS, *, seed: int = 0):
    """(noise, conditions, note) for :func:`quantize_hidden_layers`: particle-gun conditions and
    :func:`~caloforge.models.inputs.gaussian_noise`, both from ``seed``."""
    cond = calibration_conditions(particle, n, seed=seed)
    noise = gaussian_noise(np.random.default_rng(seed), len(cond), noise_dim)
    note = f"{len(cond)} of {n} particle-gun {particle} tracks (0-3 GeV/c, seed {seed}) that reach the barrel"
    return noise, cond, note
