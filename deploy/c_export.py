"""C99 code generation from an ``IntegerModel``: the same integer arithmetic, bit for bit.

Generated files: ``model.h`` (interface), ``model.c`` (weights and the network), ``main.c`` (a
driver reading feature codes, one clip per line). Choices, each for a microcontroller target:

* Weights are stored at their bitwidth: 4 bits or less packed two per byte (low nibble first,
  unpacked with sign extension where they are used; the narrow packed kernel's eight, or 2-bit
  weights sixteen, to a 32-bit word), up to 8 bits as int8_t, else int16_t.
  Biases are stored in the narrowest of int16_t, int32_t, int64_t that holds bits_accumulator,
  already at the accumulator scale.
* The accumulator is a uint16_t, uint32_t or uint64_t register, the narrowest that holds
  bits_accumulator (the quantizer sizes it per layer): unsigned arithmetic wraps
  without undefined behaviour, then the low bits_accumulator bits are sign-extended, which is the
  two's-complement wrap of the simulation. Rescaling is a rounding shift (half away from zero)
  with saturation; every shift is a compile-time constant.
* Each conv (stride, zero padding, depthwise or not) computes only the outputs its max pool
  reads, or sums them for a global average pool (rounded half away from zero, as the simulation
  does), and writes pooled, relu'd codes already in the next layer's input format, so no
  full-resolution map is ever stored. The blocks come from the model's description.
* Packed kernels (one C source: the DSP extension's dual 16-bit multiply-accumulates where the
  compiler targets it, ``__ARM_FEATURE_DSP``, the same sums in portable C elsewhere; exact modulo
  2^32, then the low bits_accumulator bits as above): convs (padded ones read a zero-padded copy
  of their input) and fully connected layers with 5- to 8-bit weights, with inputs gathered as
  int16 pairs and weights re-ordered at export so each loaded word feeds two multiply-accumulates
  (two output channels by two positions); the same for 1- to 4-bit weights kept packed (the
  narrow kernel: each field masked at the top of its bytes gives int16 pairs of 2^(8-b) times the
  weights, the sums shifted back down; accumulators of at most 28 bits, 26 for 2-bit fields, and
  layers of at least 1,024 MACs; a conv whose scaled weight pairs fit in 64 words expands them
  once per call into a stack array, ``_narrow_expanded``); depthwise convs without pooling with each kernel row's weights
  as int16 pairs. Other layers take the portable loops.
* Activations live in one static arena: layer outputs alternate between its two ends, so it only
  needs the largest input+output pair. No malloc, no float.

``kws_infer`` takes int8_t features when the first layer's bits_inputs <= 8, else int16_t (typedef
``kws_input_t``), writes the scores (logits * 2^KWS_SCORE_FL) and returns the argmax class.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fixedpoint.fixed_point import code_limits
from utils.atomic import write_text

if TYPE_CHECKING:
    from deploy.integer_engine import IntegerModel

_TEMPLATES = Path(__file__).parent / "templates"
_SCORE_BYTES = 4  # int32_t scores


def _data_ctype(bits):
    return "int8_t" if bits <= 8 else "int16_t"


def _data_bytes(bits):
    return 1 if bits <= 8 else 2


def _weight_bytes(layer):
    if _dsp(layer):
        return _paired(layer.weight.shape[0]) * _row_length(layer)[1]
    if _narrow(layer):
        return _paired(layer.weight.shape[0]) * _narrow_words(layer) * 4
    if _dw_packed(layer):
        return layer.weight.shape[0] * layer.weight.shape[2] * _dw_words(layer) * 4
    n = layer.weight.size
    if layer.bits_weights <= 4:
        return (n + 1) // 2
    return n * _data_bytes(layer.bits_weights)


def _accumulator_bits(bits):
    """Width of the narrowest C integer type that holds a ``bits``-wide accumulator."""
    return 16 if bits <= 16 else 32 if bits <= 32 else 64


def _paired(n):
    """Output channels as the packed kernel stores them: two at a time, an odd last one zero padded."""
    return n + n % 2


def _bias_bytes(layer):
    n = _paired(layer.bias.size) if _packed(layer) else layer.bias.size
    return n * _accumulator_bits(layer.bits_accumulator) // 8


def _buffers(int_model):
    """(input bytes, output bytes) of every layer as the generated code stores them: the caller's
    features and scores at the ends, pooled codes in the next layer's input format between."""
    layers = int_model.layers
    pairs = []
    for i, layer in enumerate(layers):
        in_bytes = int(np.prod(layer.input_shape)) * _data_bytes(layer.bits_inputs)
        if i + 1 < len(layers):
            out_bytes = int(np.prod(layer.output_shape)) * _data_bytes(layers[i + 1].bits_inputs)
        else:
            out_bytes = int(np.prod(layer.output_shape)) * _SCORE_BYTES
        pairs.append((in_bytes, out_bytes))
    return pairs


def c_model_memory(int_model: IntegerModel) -> tuple[int, int]:
    """(flash_bytes, ram_bytes) of the generated code: flash = weight and bias arrays as stored;
    RAM = the largest input+output pair of activation buffers of any layer (the caller's features
    for the first layer and int32 scores for the last included)."""
    flash = sum(_weight_bytes(layer) + _bias_bytes(layer) for layer in int_model.layers)
    ram = max(a + b for a, b in _buffers(int_model))
    return flash, ram


def _array(ctype, name, values, comment) -> str:
    body = ",\n".join("    " + ", ".join(v if isinstance(v, str) else str(int(v)) for v in values[i:i + 16])
                      for i in range(0, len(values), 16))
    return f"/* {comment} */\nstatic const {ctype} {name}[{len(values)}] = {{\n{body}\n}};\n"


def _dsp(layer):
    """Whether the layer gets the packed kernel (dual 16-bit MACs on a core with the DSP extension,
    the same arithmetic in portable C elsewhere): int8 weights, a 32-bit accumulator, and a
    fully connected layer or a (not depthwise) conv; a padded conv reads a zero-padded copy of its
    input."""
    return (4 < layer.bits_weights <= 8 and layer.bits_accumulator <= 32
            and layer.kind in ("linear", "conv"))


# Below this many multiply-accumulates a layer keeps the portable loops: the narrow kernel's
# unrolled code (gcc -O3 folds the constant weights into it) would cost more flash than it saves.
_NARROW_MIN_MACS = 1024


def _narrow(layer):
    """Field width of the narrow packed kernel, 2 or 4 (0: the layer does not get it): the packed
    kernel of ``_dsp`` for 1- to 4-bit weights kept packed, 8 (2-bit weights: 16) to a 32-bit
    word. Their extraction scales each weight by 2^(8 - width) (``_narrow_shift``), so the
    accumulator needs that many bits of headroom in 32."""
    if layer.kind not in ("linear", "conv") or layer.bits_weights > 4 or _macs(layer) < _NARROW_MIN_MACS:
        return 0
    if layer.bits_weights <= 2 and layer.bits_accumulator + 6 <= 32:
        return 2
    return 4 if layer.bits_accumulator + 4 <= 32 else 0


# A narrow conv whose expanded weights take at most this many words keeps them expanded in a stack
# array (``_narrow_expanded``): 256 B of stack at most.
_NARROW_EXPAND_WORDS = 64


def _narrow_fields(layer):
    """(word, field, half) of every field of one narrow row that holds inputs, in kernel order:
    all fields of the full words, in the last word those up to its last input (``half``: a field
    holding x4f alone)."""
    k, _ = _row_length(layer)
    fields, group, words = 8 // _narrow(layer), _narrow_group(layer), _narrow_words(layer)
    last = k - (words - 1) * group
    out = []
    for g in range(words):
        used = fields if g < words - 1 else (last + 3) // 4
        out += [(g, f, g == words - 1 and f == used - 1 and last % 4 == 1) for f in range(used)]
    return out


def _expanded_pair_words(layer):
    """32-bit words of one pair of output channels' scaled weight pairs, expanded: per field the
    four int16 pairs (sxtb16 and sxtb16 ror 8 of each row's masked field), two for a half one."""
    return sum(2 if half else 4 for _, _, half in _narrow_fields(layer))


def _narrow_expanded(layer):
    """Whether a narrow conv expands its scaled weight pairs once per call into a stack array (the
    kernel then loads each pair instead of extracting it at every position): a conv, whose every
    weight serves many positions, so the expansion costs little beside the extraction it saves,
    and whose expanded weights fit in ``_NARROW_EXPAND_WORDS`` words (a few output channels of
    short rows, e.g. a first conv over one input channel, whose extracted pairs spill to the stack
    anyway; long rows would need an array of over a kilobyte)."""
    return (layer.kind == "conv" and bool(_narrow(layer))
            and _paired(layer.weight.shape[0]) // 2 * _expanded_pair_words(layer) <= _NARROW_EXPAND_WORDS)


def _macs(layer):
    """Multiply-accumulates of one classification: weights times the conv's output positions."""
    positions = int(np.prod(layer.conv_shape[1:])) if layer.kind != "linear" else 1
    return int(layer.weight.size) * positions


def _narrow_shift(layer):
    """log2 of the scale of the narrow kernel's sums: a w-bit field sign-extended from the top of
    its byte is 2^(8 - w) times the weight."""
    return 8 - _narrow(layer)


def _narrow_group(layer):
    """Inputs per 32-bit word of narrow weights: four bytes times the fields of a byte."""
    return 4 * (8 // _narrow(layer))


def _narrow_words(layer):
    """32-bit words of one output's narrow weights (its row zero padded to whole words)."""
    return -(-_row_length(layer)[0] // _narrow_group(layer))


def _packed(layer):
    """Whether a conv or fully connected layer goes through a packed kernel (8-bit or narrow)."""
    return _dsp(layer) or bool(_narrow(layer))


def _dw_packed(layer):
    """Whether a depthwise conv gets the packed kernel: each kernel row's weights stored as int16
    pairs in 32-bit words, its inputs read as int16 pairs from a zero-padded copy of one channel
    (one dual multiply-accumulate per pair); a 32-bit accumulator and no pooling."""
    return layer.kind == "depthwise" and layer.bits_accumulator <= 32 and not layer.maxpool and not layer.avgpool


def _dw_words(layer):
    """32-bit words of packed weights per kernel row (an odd last weight paired with a zero)."""
    return (layer.weight.shape[3] + 1) // 2


def _padded_shape(layer):
    """(channels, height, width) of a conv's input with its zero padding on both sides."""
    c_in, h, w = layer.input_shape
    ph, pw = layer.padding
    return c_in, h + 2 * ph, w + 2 * pw


def _row_length(layer):
    """Inputs per output (kernel size times input channels, or fully connected inputs), and that
    rounded up to a multiple of 4 (the packed kernel's rows, zero padded)."""
    k = int(np.prod(layer.weight.shape[1:]))
    return k, (k + 3) // 4 * 4


def _weights_c(layer):
    """The weight and bias arrays of a layer and the ``NAME_W(i)`` accessor macro."""
    name, macro = layer.name, layer.name.upper()
    codes = layer.weight.reshape(-1).astype(np.int64)
    shape = "x".join(map(str, layer.weight.shape))
    fmt = f"{layer.bits_weights}-bit weight codes {shape}, fl = {layer.fl_weights}"
    if _dw_packed(layer):
        c, _, kh, kw = layer.weight.shape
        rows = np.zeros((c, kh, 2 * _dw_words(layer)), dtype=np.int64)
        rows[:, :, :kw] = layer.weight[:, 0]
        words = (rows[..., 0::2] & 0xFFFF) | ((rows[..., 1::2] & 0xFFFF) << 16)
        text = _array("uint32_t", f"{name}_w", words.reshape(-1),
                      fmt + ", each kernel row as int16 pairs (low half first, an odd last one with 0)")
    elif _dsp(layer):
        k, k4 = _row_length(layer)
        n = layer.weight.shape[0]
        rows = np.zeros((_paired(n), k4), dtype=np.int64)
        rows[:n, :k] = layer.weight.reshape(n, k)
        # the rows of each pair of outputs interleaved four weights at a time (one word each)
        pairs = rows.reshape(-1, 2, k4 // 4, 4).transpose(0, 2, 1, 3).reshape(-1)
        text = _array("int8_t", f"{name}_w", pairs, fmt + f", rows zero padded to {k4} (and to an even "
                      f"count), each pair's two rows interleaved four weights at a time")
    elif _narrow(layer):
        b = _narrow(layer)
        k, _ = _row_length(layer)
        n, group, words = layer.weight.shape[0], _narrow_group(layer), _narrow_words(layer)
        rows = np.zeros((_paired(n), words * group), dtype=np.int64)
        rows[:n, :k] = layer.weight.reshape(n, k)
        # input 4f + j of a word's group is field f (bits b*f and up) of its byte j
        fields = (rows.reshape(-1, words, 8 // b, 4) & ((1 << b) - 1)).astype(np.uint64)
        shifts = (8 * np.arange(4)[None, :] + b * np.arange(8 // b)[:, None]).astype(np.uint64)
        packed = (fields << shifts).sum(axis=(2, 3))
        # the words of each pair of outputs interleaved, one word each at a time
        pairs = packed.reshape(-1, 2, words).transpose(0, 2, 1).reshape(-1)
        text = _array("uint32_t", f"{name}_w", [hex(int(v)) + "u" for v in pairs],
                      fmt + f", {group} to a 32-bit word (input 4f + j of a word in bits {b}f.. of its byte j), "
                      f"rows zero padded to {words * group} (and to an even count), each pair's two rows "
                      f"interleaved a word at a time")
    elif layer.bits_weights <= 4:
        nibbles = np.concatenate([codes & 0xF, np.zeros(len(codes) % 2, dtype=np.int64)])
        packed = nibbles[0::2] | (nibbles[1::2] << 4)
        text = _array("uint8_t", f"{name}_w", packed, fmt + ", packed two per byte, low nibble first")
        text += (f"#define {macro}_W(i) ((int32_t)((({name}_w[(i) >> 1] >> (((i) & 1) * 4)) "
                 f"& 0xF) ^ 0x8) - 0x8)\n")
    else:
        text = _array(_data_ctype(layer.bits_weights), f"{name}_w", codes, fmt)
        text += f"#define {macro}_W(i) ((int32_t){name}_w[i])\n"
    bias_type = f"int{_accumulator_bits(layer.bits_accumulator)}_t"
    bias = layer.bias
    if _packed(layer) and bias.size % 2:
        bias = np.concatenate([bias, np.zeros(1, dtype=bias.dtype)])
    text += _array(bias_type, f"{name}_b", bias,
                   f"bias codes at the accumulator scale, fl = {layer.fl_inputs + layer.fl_weights}")
    return text


def _register(layer):
    """C type of the accumulator register and the wrap arguments (mask, half) as literals."""
    bits = layer.bits_accumulator
    reg = f"uint{_accumulator_bits(bits)}_t"
    return reg, f"UINT64_C({hex((1 << bits) - 1)})", f"INT64_C({1 << (bits - 1)})"


def _store(layer, following, var, dest) -> str:
    """C statement that writes ``var`` (relu'd output codes) to ``dest`` in the next format."""
    if following is None:
        return f"{dest} = {var};"
    lo, hi = code_limits(following.bits_inputs)
    shift = layer.fl_outputs - following.fl_inputs
    return (f"{dest} = ({_data_ctype(following.bits_inputs)})"
            f"kws_requant({var}, {shift}, {lo}, {hi});")


def _out_ctype(following):
    return "int32_t" if following is None else _data_ctype(following.bits_inputs)


def _conv_c(layer, following) -> str:
    """A conv (or depthwise conv) with stride and zero padding, relu, and its pooling fused: each
    output of the max pool (or the one of the global average pool) is computed from the conv
    outputs it reads, so no full-resolution map is ever stored."""
    c_in, h, w = layer.input_shape
    c_out, ch, cw = layer.conv_shape
    _, oh, ow = layer.output_shape
    kh, kw = layer.weight.shape[2:]
    (sh, sw), (pad_h, pad_w) = layer.stride, layer.padding
    reg, mask, half = _register(layer)
    lo, hi = code_limits(layer.bits_outputs)
    win_h, win_w = (ch, cw) if layer.avgpool else (layer.maxpool or 1,) * 2
    depthwise = layer.kind == "depthwise"
    channels = "c = o; c <= o; c++" if depthwise else f"c = 0; c < {c_in}; c++"
    w_in = 1 if depthwise else c_in
    w_channel = "0" if depthwise else "c"
    bounds = (f"\n                                    if (iy < 0 || iy >= {h} || ix < 0 || ix >= {w})"
              f"\n                                        continue;") if pad_h or pad_w else ""
    relu = "\n                        if (v < 0)\n                            v = 0;" if layer.relu else ""
    if layer.avgpool:
        init, combine = "0", "pool += v;"
        finish = f"\n                pool = kws_round_div(pool, {ch * cw});"
        what = f"global average pool -> {c_out}x1x1"
    else:
        init, combine = f"{lo}", "if (v > pool)\n                            pool = v;"
        finish = ""
        what = f"max pool {win_h}x{win_w} -> {c_out}x{oh}x{ow}" if layer.maxpool else f"-> {c_out}x{oh}x{ow}"
    store = _store(layer, following, "pool", "y[(o * %d + py) * %d + px]" % (oh, ow))
    return f"""
/* {layer.name}: {c_out} {"depthwise " if depthwise else ""}filters {w_in}x{kh}x{kw} over {c_in}x{h}x{w}, stride {sh}x{sw}, padding {pad_h}x{pad_w}{", relu" if layer.relu else ""}, {what}. */
static void kws_{layer.name}(const {_data_ctype(layer.bits_inputs)} *x, {_out_ctype(following)} *y)
{{
    int o, py, px, dy, dx, c, ky, kx, iy, ix;
    for (o = 0; o < {c_out}; o++) {{
        for (py = 0; py < {oh}; py++) {{
            for (px = 0; px < {ow}; px++) {{
                int64_t pool = {init};
                for (dy = 0; dy < {win_h}; dy++) {{
                    for (dx = 0; dx < {win_w}; dx++) {{
                        {reg} acc = ({reg}){layer.name}_b[o];
                        int64_t v;
                        for ({channels})
                            for (ky = 0; ky < {kh}; ky++)
                                for (kx = 0; kx < {kw}; kx++) {{
                                    iy = (py * {win_h} + dy) * {sh} + ky - {pad_h};
                                    ix = (px * {win_w} + dx) * {sw} + kx - {pad_w};{bounds}
                                    acc += ({reg})((int32_t)x[(c * {h} + iy) * {w} + ix]
                                                   * {layer.name.upper()}_W(((o * {w_in} + {w_channel}) * {kh} + ky) * {kw} + kx));
                                }}
                        v = kws_requant(kws_wrap(acc, {mask}, {half}), {layer.output_shift}, {lo}, {hi});{relu}
                        {combine}
                    }}
                }}{finish}
                {store}
            }}
        }}
    }}
}}
"""


def _linear_c(layer, following) -> str:
    n_out, n_in = layer.weight.shape
    reg, mask, half = _register(layer)
    lo, hi = code_limits(layer.bits_outputs)
    relu = "\n        if (v < 0)\n            v = 0;" if layer.relu else ""
    return f"""
/* {layer.name}: {n_in} -> {n_out}{", relu" if layer.relu else ""} */
static void kws_{layer.name}(const {_data_ctype(layer.bits_inputs)} *x, {_out_ctype(following)} *y)
{{
    int o, i;
    for (o = 0; o < {n_out}; o++) {{
        {reg} acc = ({reg}){layer.name}_b[o];
        int32_t v;
        for (i = 0; i < {n_in}; i++)
            acc += ({reg})((int32_t)x[i] * {layer.name.upper()}_W(o * {n_in} + i));
        v = kws_requant(kws_wrap(acc, {mask}, {half}), {layer.output_shift}, {lo}, {hi});{relu}
        {_store(layer, following, "v", "y[o]")}
    }}
}}
"""


def _half_step(layer):
    """Whether the last group of four inputs holds one input only (its odd words are zero and the
    packed kernel skips them)."""
    return _row_length(layer)[0] % 4 == 1


def _pack_lines(values, indent, dest="kws_col", half=False):
    """C statements filling ``dest`` from ``values`` (C expressions, zero padded to a multiple of
    4): each group of four v0..v3 becomes the words (v0, v2) and (v1, v3), so that one word of
    four int8 weights w0..w3 gives (w0, w2) with __sxtb16 and (w1, w3) with __sxtb16 of it
    rotated by 8 bits. With ``half`` the last group's second word (all zero) is not written: the
    kernel's half step does not read it."""
    values = list(values) + ["0"] * (-len(values) % 4)
    lines = []
    for g in range(0, len(values), 4):
        v = values[g:g + 4]
        lines.append(f"{indent}{dest}[{g // 2}] = KWS_PACK({v[0]}, {v[2]});")
        if not (half and g + 4 == len(values)):
            lines.append(f"{indent}{dest}[{g // 2 + 1}] = KWS_PACK({v[1]}, {v[3]});")
    return "\n".join(lines)


def _requant32(layer, value) -> str:
    """C expression rescaling the 32-bit ``value`` (a wrapped accumulator) to the output format."""
    lo, hi = code_limits(layer.bits_outputs)
    fn = "kws_requant32" if 0 < layer.output_shift < 32 else "kws_requant"
    return f"{fn}({value}, {layer.output_shift}, {lo}, {hi})"


def _pool_positions(layer):
    """Input offsets of the conv positions one max-pool output reads (padded to an even count
    with a repeat of the last: the kernel computes positions in pairs, and a repeat does not
    change a maximum)."""
    _, h, w = _padded_shape(layer)
    sh, sw = layer.stride
    win = layer.maxpool
    offsets = [dy * sh * w + dx * sw for dy in range(win) for dx in range(win)]
    return offsets + offsets[-1:] * (len(offsets) % 2)


def _col_words(layer):
    """32-bit words of kws_col the layer's packed kernel uses."""
    words = _row_length(layer)[1] // 2
    if layer.kind == "linear":
        return words
    return words * (len(_pool_positions(layer)) if layer.maxpool else 2)


def _emit_value(layer, following, acc, dest, pooled, indent) -> str:
    """Statements rescaling ``acc`` (a wrapped accumulator, or a maximum of them) and storing it."""
    relu = f"\n{indent}if (v < 0)\n{indent}    v = 0;" if layer.relu else ""
    return f"{indent}v = {_requant32(layer, acc)};{relu}\n{indent}{_store(layer, following, 'v', dest)}"


def _conv_steps(layer, indent):
    """The unrolled dot products of two output channels (weights wr: the pair's rows interleaved
    four bytes at a time) with two positions (packed inputs ca, cb) into a00, a01, a10, a11."""
    _, k4 = _row_length(layer)
    groups = k4 // 4
    lines = [f"{indent}KWS_STEP22(a00, a01, a10, a11, wr + {8 * g}, ca + {2 * g}, cb + {2 * g});"
             for g in range(groups)]
    if _half_step(layer):
        lines[-1] = lines[-1].replace("KWS_STEP22", "KWS_HALF22")
    return "\n".join(lines)


def _acc(layer, reg):
    """C expression of a packed kernel's register ``reg`` at the accumulator scale (the narrow
    kernel's sums are 2^_narrow_shift times it) as a 32-bit register."""
    return f"{reg} >> {_narrow_shift(layer)}" if _narrow(layer) else reg


def _init(layer, name, o):
    """C expression: the bias of output ``o`` as a packed kernel's starting register value."""
    value = f"(uint32_t)(int32_t){name}_b[{o}]"
    return f"{value} << {_narrow_shift(layer)}" if _narrow(layer) else value


def _narrow_steps(layer, indent, two, first=0, loop=False):
    """The dot products of two output channels through the narrow kernel (``two``: at two
    positions ca, cb into a00, a01, a10, a11; else at kws_col into a0, a1), from weight word
    ``first`` on: per word (wr[2g], wr[2g + 1]: the pair's two rows) one KWS_NF step per field,
    in the last word only the fields that hold inputs (KWS_NH for one holding x4f alone). With
    ``loop`` the full words run in a C loop over g, two words a step (less code than unrolled;
    docs/firmware.md compares), the rest unrolled."""
    b, (k, _) = _narrow(layer), _row_length(layer)
    fields, group, words = 8 // b, _narrow_group(layer), _narrow_words(layer)
    mask = "0xF0F0F0F0u" if b == 4 else "0xC0C0C0C0u"
    last = k - (words - 1) * group
    lines = []
    full = words if last == group else words - 1
    unroll = 2
    if loop and (full - first) // unroll >= 2:   # the full words in a loop over g, two at a time
        end = first + (full - first) // unroll * unroll
        lines.append(f"{indent}for (g = {first}; g < {end}; g += {unroll}) {{")
        for r in range(unroll):
            lines.append(f"{indent}    u0 = wr[2 * g + {2 * r}];\n{indent}    u1 = wr[2 * g + {2 * r + 1}];")
            for f in range(fields):
                word = f"{2 * fields} * g + {2 * fields * r + 2 * f}"
                args = (f"a00, a01, a10, a11, u0, u1, {8 - b - b * f}, {mask}, ca + {word}, cb + {word}" if two
                        else f"a0, a1, u0, u1, {8 - b - b * f}, {mask}, kws_col + {word}")
                lines.append(f"{indent}    KWS_NF{'22' if two else '12'}({args});")
        lines.append(f"{indent}}}")
        first = end
    for g in range(first, words):
        used = fields if g < words - 1 else (last + 3) // 4
        lines.append(f"{indent}u0 = wr[{2 * g}];\n{indent}u1 = wr[{2 * g + 1}];")
        for f in range(used):
            half = g == words - 1 and f == used - 1 and last % 4 == 1
            word = g * 2 * fields + 2 * f
            args = (f"a00, a01, a10, a11, u0, u1, {8 - b - b * f}, {mask}, ca + {word}, cb + {word}" if two
                    else f"a0, a1, u0, u1, {8 - b - b * f}, {mask}, kws_col + {word}")
            lines.append(f"{indent}KWS_N{'H' if half else 'F'}{'22' if two else '12'}({args});")
    return "\n".join(lines)


def _conv_dsp_c(layer, following) -> str:
    """A conv without padding through the packed kernel: the inputs of the conv positions one
    output reads (the max pool's window, or two neighbouring outputs without a pool) gathered
    once into kws_col (int16 pairs), then for each pair of output channels the dot products of
    two channels with two positions at a time (2x2 blocking: each loaded word of weights or of
    inputs feeds two multiply-accumulates). Max pooling takes the largest wrapped accumulator of
    the window and rescales it once: rescaling, saturation and relu are monotone, so this is the
    simulation's rescale-relu-then-pool."""
    c_in, h, w = _padded_shape(layer)
    c_out = layer.conv_shape[0]
    _, oh, ow = layer.output_shape
    kh, kw = layer.weight.shape[2:]
    sh, sw = layer.stride
    _, k4 = _row_length(layer)
    ph, pw = layer.padding
    xin = "x_in" if ph or pw else "x"
    pad = ""
    if ph or pw:   # the input copied into a zero-padded buffer: the kernel then needs no bounds checks
        c0, h0, w0 = layer.input_shape
        pad = f"""
    static {_data_ctype(layer.bits_inputs)} x[{c_in * h * w}];   /* the input, zero padded {ph}x{pw} */
    {{
        int i, r, q;
        for (i = 0; i < {c_in * h * w}; i++)
            x[i] = 0;
        for (i = 0; i < {c0}; i++)
            for (r = 0; r < {h0}; r++)
                for (q = 0; q < {w0}; q++)
                    x[(i * {h} + r + {ph}) * {w} + q + {pw}] = x_in[(i * {h0} + r) * {w0} + q];
    }}"""
    words = k4 // 2
    bits = layer.bits_accumulator
    xt = _data_ctype(layer.bits_inputs)
    half = _half_step(layer)
    taps = [(c * h + ky) * w + kx for c in range(c_in) for ky in range(kh) for kx in range(kw)]
    name = layer.name
    odd = c_out % 2 == 1
    c0, h0, w0 = layer.input_shape
    head = (f"/* {name}: {c_out} filters {c_in}x{kh}x{kw} over {c0}x{h0}x{w0}, stride {sh}x{sw}, padding {ph}x{pw}"
            f"{', relu' if layer.relu else ''}, ")
    init = (f"uint32_t a00 = {_init(layer, name, 'o')}, a01 = a00, "
            f"a10 = {_init(layer, name, 'o + 1')}, a11 = a10;")
    narrow = bool(_narrow(layer))
    wdecl = (f"const uint32_t *wr = {name}_w + o * {_narrow_words(layer)};" if narrow
             else f"const int8_t *wr = {name}_w + o * {k4};")
    what = (f"narrow packed kernel, {_narrow(layer)}-bit fields" if narrow else "packed kernel") + ", 2x2 blocking"
    expand = ""
    expanded = _narrow_expanded(layer)
    if expanded:   # the scaled weight pairs of every pair of channels, once per call
        per = _expanded_pair_words(layer)
        b = _narrow(layer)
        mask = "0xF0F0F0F0u" if b == 4 else "0xC0C0C0C0u"
        lines = []
        k = 0
        for g, f, half in _narrow_fields(layer):
            up = 8 - b - b * f
            lines.append(f"            t0 = (wr[{2 * g}] << {up}) & {mask};\n            t1 = (wr[{2 * g + 1}] << {up}) & {mask};\n"
                         f"            e[{k}] = KWS_SXT(t0);\n            e[{k + 1}] = KWS_SXT(t1);")
            if not half:
                lines.append(f"            e[{k + 2}] = KWS_SXT8(t0);\n            e[{k + 3}] = KWS_SXT8(t1);")
            k += 2 if half else 4
        expand = f"""
    uint32_t we[{_paired(c_out) // 2 * per}];   /* the scaled weight pairs, {per} words a pair of channels */
    {{
        int q;
        for (q = 0; q < {_paired(c_out)}; q += 2) {{
            const uint32_t *wr = {name}_w + q * {_narrow_words(layer)};
            uint32_t *e = we + q * {per // 2};
            uint32_t t0, t1;
{chr(10).join(lines)}
        }}
    }}"""
        wdecl = f"const uint32_t *wo = we + o * {per // 2};"

    def steps(indent: str) -> str:
        if expanded:
            lines, k = [], 0
            for g, f, half in _narrow_fields(layer):
                word = g * 2 * (8 // _narrow(layer)) + 2 * f
                lines.append(f"{indent}KWS_E{'H' if half else 'F'}22(a00, a01, a10, a11, wo + {k}, ca + {word}, cb + {word});")
                k += 2 if half else 4
            return "\n".join(lines)
        if narrow:
            code = _narrow_steps(layer, indent, True, loop=True)
            return f"{indent}uint32_t u0, u1;\n" + (f"{indent}int g;\n" if "for (g" in code else "") + code
        return _conv_steps(layer, indent)
    if layer.maxpool:
        win = layer.maxpool
        positions = _pool_positions(layer)
        gather = _pack_lines([f"p[{t}]" for t in taps], "                ", "col", half)
        i8 = " " * 16
        second = ""
        if odd:
            second = (f"\n            if (o + 1 < {c_out}) {{\n"
                      + _emit_value(layer, following, "best1", f"y[((o + 1) * {oh} + py) * {ow} + px]", True, i8)
                      + "\n            }")
        else:
            second = "\n" + _emit_value(layer, following, "best1", f"y[((o + 1) * {oh} + py) * {ow} + px]",
                                        True, " " * 12)
        return f"""
{head}max pool {win}x{win} -> {c_out}x{oh}x{ow} ({what}). */
static void kws_{name}(const {xt} *{xin}, {_out_ctype(following)} *y)
{{{pad}{expand}
    static const int16_t offsets[{len(positions)}] = {{{", ".join(map(str, positions))}}};
    int o, py, px, n;
    for (py = 0; py < {oh}; py++) {{
        for (px = 0; px < {ow}; px++) {{
            const {xt} *base = x + py * {win * sh * w} + px * {win * sw};
            for (n = 0; n < {len(positions)}; n++) {{
                const {xt} *p = base + offsets[n];
                uint32_t *col = kws_col + n * {words};
{gather}
            }}
            for (o = 0; o < {c_out}; o += 2) {{
                {wdecl}
                int32_t best0 = INT32_MIN, best1 = INT32_MIN, v;
                for (n = 0; n < {len(positions)}; n += 2) {{
                    const uint32_t *ca = kws_col + n * {words}, *cb = ca + {words};
                    {init}
{steps("                    ")}
                    v = kws_wrap32({_acc(layer, "a00")}, {bits});
                    best0 = v > best0 ? v : best0;
                    v = kws_wrap32({_acc(layer, "a01")}, {bits});
                    best0 = v > best0 ? v : best0;
                    v = kws_wrap32({_acc(layer, "a10")}, {bits});
                    best1 = v > best1 ? v : best1;
                    v = kws_wrap32({_acc(layer, "a11")}, {bits});
                    best1 = v > best1 ? v : best1;
                }}
{_emit_value(layer, following, "best0", f"y[(o * {oh} + py) * {ow} + px]", True, " " * 16)}{second.replace(chr(10) + " " * 12, chr(10) + " " * 16)}
            }}
        }}
    }}
}}
"""
    _, ch, cw = layer.conv_shape
    oh, ow = ch, cw
    total = oh * ow
    gather_a = _pack_lines([f"pa[{t}]" for t in taps], "        ", "kws_col", half)
    gather_b = _pack_lines([f"pb[{t}]" for t in taps], "        ", f"kws_col + {words}", half)
    gather_b = gather_b.replace(f"kws_col + {words}[", f"kws_col[{words} + ")
    i12 = " " * 12
    def wrapped(reg: str) -> str:
        return f"kws_wrap32({_acc(layer, reg)}, {bits})"
    stores = [_emit_value(layer, following, wrapped("a00"), f"y[o * {total} + u]", False, i12),
              _emit_value(layer, following, wrapped("a01"), f"y[o * {total} + nb]", False, i12)]
    second = [_emit_value(layer, following, wrapped("a10"), f"y[(o + 1) * {total} + u]", False, i12),
              _emit_value(layer, following, wrapped("a11"), f"y[(o + 1) * {total} + nb]", False, i12)]
    if odd:
        second = [f"{i12}if (o + 1 < {c_out}) {{"] + [s.replace("\n" + i12, "\n" + i12 + "    ").replace(i12, i12 + "    ", 1) for s in second] + [f"{i12}}}"]
    pool_decl = finish = ""
    if layer.avgpool:   # each rescaled, relu'd output added to its channel's sum (a repeated odd last one once)
        def add(acc: str, o: str, repeat: bool = False) -> str:
            relu = f"\n{i12}if (v < 0)\n{i12}    v = 0;" if layer.relu else ""
            line = f"pool[{o}] += v;" if not repeat else f"if (nb != u)\n{i12}    pool[{o}] += v;"
            return f"{i12}v = {_requant32(layer, wrapped(acc))};{relu}\n{i12}{line}"
        stores = [add("a00", "o"), add("a01", "o", True)]
        second = [add("a10", "o + 1"), add("a11", "o + 1", True)]   # pool has an even count: no check
        pool_decl = f"\n    int32_t pool[{_paired(c_out)}] = {{0}};"
        finish = f"""
    for (o = 0; o < {c_out}; o++) {{
        int64_t mean = kws_round_div(pool[o], {total});
        {_store(layer, following, "mean", "y[o]")}
    }}"""
    body = "\n".join(stores + second)
    return f"""
{head}{"global average pool -> " + str(c_out) + "x1x1" if layer.avgpool else f"-> {c_out}x{oh}x{ow}"} ({what}). */
static void kws_{name}(const {xt} *{xin}, {_out_ctype(following)} *y)
{{{pad}{expand}
    int o, u;{pool_decl}
    for (u = 0; u < {total}; u += 2) {{
        int nb = u + 1 < {total} ? u + 1 : u;   /* an odd last output is computed twice */
        const {xt} *pa = x + u / {ow} * {sh * w} + u % {ow} * {sw};
        const {xt} *pb = x + nb / {ow} * {sh * w} + nb % {ow} * {sw};
{gather_a}
{gather_b}
        for (o = 0; o < {c_out}; o += 2) {{
            {wdecl}
            const uint32_t *ca = kws_col, *cb = kws_col + {words};
            int32_t v;
            {init}
{steps(i12)}
{body}
        }}
    }}{finish}
}}
"""


def _dw_packed_c(layer, following) -> str:
    """A depthwise conv (stride, zero padding) through the packed kernel: each channel copied into
    a zero-padded int16 plane, then every output a sum of dual multiply-accumulates of a row's
    weight pair with two neighbouring inputs (one word load each)."""
    c, h, w = layer.input_shape
    _, ch, cw = layer.conv_shape
    kh, kw = layer.weight.shape[2:]
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    ph2, pw2 = h + 2 * ph, w + 2 * pw
    words = _dw_words(layer)
    bits = layer.bits_accumulator
    steps = "\n".join(f"                KWS_DW(acc, wc[{ky * words + j}], p + {ky * pw2 + 2 * j});"
                       for ky in range(kh) for j in range(words))
    return f"""
/* {layer.name}: {c} depthwise filters 1x{kh}x{kw} over {c}x{h}x{w}, stride {sh}x{sw}, padding {ph}x{pw}{", relu" if layer.relu else ""}, -> {c}x{ch}x{cw} (packed kernel). */
static void kws_{layer.name}(const {_data_ctype(layer.bits_inputs)} *x, {_out_ctype(following)} *y)
{{
    /* one channel, zero padded; one more element: an odd kernel row's last pair reads it (times 0) */
    static int16_t plane[{ph2 * pw2 + 1}];
    int k, r, q, oy, ox;
    for (k = 0; k < {ph2 * pw2 + 1}; k++)
        plane[k] = 0;
    for (k = 0; k < {c}; k++) {{
        const uint32_t *wc = {layer.name}_w + k * {kh * words};
        for (r = 0; r < {h}; r++)
            for (q = 0; q < {w}; q++)
                plane[(r + {ph}) * {pw2} + q + {pw}] = x[(k * {h} + r) * {w} + q];
        for (oy = 0; oy < {ch}; oy++) {{
            for (ox = 0; ox < {cw}; ox++) {{
                const int16_t *p = plane + oy * {sh * pw2} + ox * {sw};
                uint32_t acc = (uint32_t)(int32_t){layer.name}_b[k];
                int32_t v;
{steps}
{_emit_value(layer, following, f"kws_wrap32(acc, {bits})", f"y[(k * {ch} + oy) * {cw} + ox]", False, " " * 16)}
            }}
        }}
    }}
}}
"""


def _linear_dsp_c(layer, following) -> str:
    """A fully connected layer through the packed kernel: the inputs packed once into kws_col,
    then two outputs at a time (each loaded word of inputs feeds two multiply-accumulates)."""
    n_out, n_in = layer.weight.shape
    _, k4 = _row_length(layer)
    bits = layer.bits_accumulator
    full = n_in // 4 * 4
    tail = [f"x[{i}]" for i in range(full, n_in)]
    groups = k4 // 4
    half = _half_step(layer)
    looped = (groups - half) // 2 * 2
    steps = (f"        for (g = 0; g < {looped}; g += 2) {{\n"
             f"            KWS_STEP12(a0, a1, wr + 8 * g, kws_col + 2 * g);\n"
             f"            KWS_STEP12(a0, a1, wr + 8 * g + 8, kws_col + 2 * g + 2);\n        }}") if looped else ""
    for g in range(looped, groups):
        macro = "KWS_HALF12" if half and g == groups - 1 else "KWS_STEP12"
        steps += f"\n        {macro}(a0, a1, wr + {8 * g}, kws_col + {2 * g});"
    tail_code = ""
    if tail:
        tail_code = "\n" + _pack_lines(tail, "    ", "kws_col", half).replace("kws_col[", f"kws_col[{full // 2} + ")
    wdecl = f"const int8_t *wr = {layer.name}_w + o * {k4};"
    what = "packed kernel"
    if _narrow(layer):
        b, fields, words = _narrow(layer), 8 // _narrow(layer), _narrow_words(layer)
        mask = "0xF0F0F0F0u" if b == 4 else "0xC0C0C0C0u"
        wdecl = f"const uint32_t *wr = {layer.name}_w + o * {words};\n        uint32_t u0, u1;"
        what = f"narrow packed kernel, {b}-bit fields"
        body = "\n".join(f"            KWS_NF12(a0, a1, u0, u1, {8 - b - b * f}, {mask}, kws_col + {2 * fields} * g + {2 * f});"
                         for f in range(fields))
        steps = (f"        for (g = 0; g < {words - 1}; g++) {{\n            u0 = wr[2 * g];\n            u1 = wr[2 * g + 1];\n"
                 f"{body}\n        }}\n" if words > 1 else "") + _narrow_steps(layer, " " * 8, False, words - 1)
    i8 = " " * 8
    first = _emit_value(layer, following, f"kws_wrap32({_acc(layer, 'a0')}, {bits})", "y[o]", False, i8)
    second = _emit_value(layer, following, f"kws_wrap32({_acc(layer, 'a1')}, {bits})", "y[o + 1]", False, i8)
    if n_out % 2:
        second = (f"{i8}if (o + 1 < {n_out}) {{\n"
                  + "\n".join("    " + line for line in second.split("\n")) + f"\n{i8}}}")
    return f"""
/* {layer.name}: {n_in} -> {n_out}{", relu" if layer.relu else ""} ({what}, two outputs at a time) */
static void kws_{layer.name}(const {_data_ctype(layer.bits_inputs)} *x, {_out_ctype(following)} *y)
{{
    int o, g;
    for (g = 0; g < {full // 4}; g++) {{
        kws_col[2 * g] = KWS_PACK(x[4 * g], x[4 * g + 2]);
        kws_col[2 * g + 1] = KWS_PACK(x[4 * g + 1], x[4 * g + 3]);
    }}{tail_code}
    for (o = 0; o < {n_out}; o += 2) {{
        {wdecl}
        uint32_t a0 = {_init(layer, layer.name, 'o')}, a1 = {_init(layer, layer.name, 'o + 1')};
        int32_t v;
{steps}
{first}
{second}
    }}
    (void)g;
}}
"""


_PACKED = """
/* Packed kernel: two int16 values per 32-bit word (low half first). For four int8 weights w[0..3]
   and the words c[0] = (x0, x2), c[1] = (x1, x3) of packed inputs, a step adds
   w0 x0 + w1 x1 + w2 x2 + w3 x3 to a 32-bit register that wraps; KWS_STEP22 does it for two
   output channels (weights w, w + 4) and two positions (inputs ca, cb), KWS_STEP12 for two
   channels and one input vector; the HALF forms for a last group holding x0 only. With the DSP
   extension: a word load, __sxtb16 (and sxtb16 ror #8) per weight word, one __smlad per pair of
   products; elsewhere the same sums in portable C. Both are exact modulo 2^32, and kws_wrap32
   keeps the low bits_accumulator bits. */
#define KWS_PACK(a, b) ((uint32_t)(uint16_t)(a) | ((uint32_t)(uint16_t)(b) << 16))   /* pkhbt on the M4 */
#define KWS_LO(c) (((int32_t)((c) & 0xFFFFu) ^ 0x8000) - 0x8000)
#define KWS_HI(c) (((int32_t)((c) >> 16) ^ 0x8000) - 0x8000)
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#include <string.h>
/* __sxtb16 of the word rotated by 8 bits, in one instruction (gcc does not fuse the rotation). */
static inline int32_t kws_sxtb16_ror8(uint32_t w)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}
static inline uint32_t kws_load32(const int8_t *w)
{
    uint32_t u;
    memcpy(&u, w, 4);
    return u;
}
#define KWS_MAC2(acc, l, h, c) \\
    ((acc) = (uint32_t)__smlad((h), (int32_t)(c)[1], __smlad((l), (int32_t)(c)[0], (int32_t)(acc))))
#define KWS_STEP22(a00, a01, a10, a11, w, ca, cb) do { \\
        uint32_t u0_ = kws_load32(w), u1_ = kws_load32((w) + 4); \\
        int32_t l0_ = __sxtb16(u0_), h0_ = kws_sxtb16_ror8(u0_); \\
        int32_t l1_ = __sxtb16(u1_), h1_ = kws_sxtb16_ror8(u1_); \\
        KWS_MAC2(a00, l0_, h0_, ca); \\
        KWS_MAC2(a01, l0_, h0_, cb); \\
        KWS_MAC2(a10, l1_, h1_, ca); \\
        KWS_MAC2(a11, l1_, h1_, cb); \\
    } while (0)
#define KWS_HALF22(a00, a01, a10, a11, w, ca, cb) do { \\
        int32_t l0_ = __sxtb16(kws_load32(w)), l1_ = __sxtb16(kws_load32((w) + 4)); \\
        int32_t xa_ = (int32_t)(ca)[0], xb_ = (int32_t)(cb)[0]; \\
        (a00) = (uint32_t)__smlad(l0_, xa_, (int32_t)(a00)); \\
        (a01) = (uint32_t)__smlad(l0_, xb_, (int32_t)(a01)); \\
        (a10) = (uint32_t)__smlad(l1_, xa_, (int32_t)(a10)); \\
        (a11) = (uint32_t)__smlad(l1_, xb_, (int32_t)(a11)); \\
    } while (0)
/* depthwise: a word of two int16 weights times the two int16 inputs at p (an unaligned word load) */
static inline int32_t kws_load_pair(const int16_t *p)
{
    int32_t u;
    memcpy(&u, p, 4);
    return u;
}
#define KWS_DW(acc, wp, p) ((acc) = (uint32_t)__smlad((int32_t)(wp), kws_load_pair(p), (int32_t)(acc)))
#define KWS_STEP12(a0, a1, w, c) do { \\
        uint32_t u0_ = kws_load32(w), u1_ = kws_load32((w) + 4); \\
        KWS_MAC2(a0, __sxtb16(u0_), kws_sxtb16_ror8(u0_), c); \\
        KWS_MAC2(a1, __sxtb16(u1_), kws_sxtb16_ror8(u1_), c); \\
    } while (0)
#define KWS_HALF12(a0, a1, w, c) do { \\
        int32_t x_ = (int32_t)(c)[0]; \\
        (a0) = (uint32_t)__smlad(__sxtb16(kws_load32(w)), x_, (int32_t)(a0)); \\
        (a1) = (uint32_t)__smlad(__sxtb16(kws_load32((w) + 4)), x_, (int32_t)(a1)); \\
    } while (0)
#else
#define KWS_DOT4(w, c) ((uint32_t)((w)[0] * KWS_LO((c)[0]) + (w)[1] * KWS_LO((c)[1]) \\
                                   + (w)[2] * KWS_HI((c)[0]) + (w)[3] * KWS_HI((c)[1])))
#define KWS_DOT2(w, c) ((uint32_t)((w)[0] * KWS_LO((c)[0]) + (w)[2] * KWS_HI((c)[0])))
#define KWS_STEP22(a00, a01, a10, a11, w, ca, cb) do { \\
        (a00) += KWS_DOT4((w), (ca)); (a01) += KWS_DOT4((w), (cb)); \\
        (a10) += KWS_DOT4((w) + 4, (ca)); (a11) += KWS_DOT4((w) + 4, (cb)); \\
    } while (0)
#define KWS_HALF22(a00, a01, a10, a11, w, ca, cb) do { \\
        (a00) += KWS_DOT2((w), (ca)); (a01) += KWS_DOT2((w), (cb)); \\
        (a10) += KWS_DOT2((w) + 4, (ca)); (a11) += KWS_DOT2((w) + 4, (cb)); \\
    } while (0)
#define KWS_DW(acc, wp, p) ((acc) += (uint32_t)(KWS_LO(wp) * (p)[0]) + (uint32_t)(KWS_HI(wp) * (p)[1]))
#define KWS_STEP12(a0, a1, w, c) do { (a0) += KWS_DOT4((w), (c)); (a1) += KWS_DOT4((w) + 4, (c)); } while (0)
#define KWS_HALF12(a0, a1, w, c) do { (a0) += KWS_DOT2((w), (c)); (a1) += KWS_DOT2((w) + 4, (c)); } while (0)
#endif

/* kws_requant for a 32-bit value and 0 < shift < 32, in 32-bit arithmetic: the same result
   (|v| + 2^(shift-1) stays below 2^32). */
static inline int32_t kws_requant32(int32_t v, int shift, int32_t lo, int32_t hi)
{
    uint32_t a = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    int32_t r = (int32_t)((a + ((uint32_t)1 << (shift - 1))) >> shift);
    r = v < 0 ? -r : r;
    return r < lo ? lo : r > hi ? hi : r;
}

/* Two's-complement value of the low ``bits`` (at most 32) bits of a 32-bit register, in 32-bit
   arithmetic (bits is a constant at every call, so one branch remains). */
static inline int32_t kws_wrap32(uint32_t reg, int bits)
{
    uint32_t half;
    if (bits == 32)
        return reg < 0x80000000u ? (int32_t)reg : -(int32_t)~reg - 1;
    half = (uint32_t)1 << (bits - 1);
    return (int32_t)((reg & ((half << 1) - 1)) ^ half) - (int32_t)half;
}
"""

_NARROW = """
/* Narrow packed kernel: 1- to 4-bit weights kept packed, fields of b = 4 (2-bit weights: b = 2)
   bits, 8 (16) to a 32-bit word u; input 4f + j of the word's group is field f (bits b*f..) of
   byte j. A field shifted to the top of its bytes and masked, t = u << (8 - b - b*f) & mask, holds
   2^(8-b) times each byte's weight, so __sxtb16(t) and sxtb16 (t, ror #8) are int16 pairs of
   scaled weights for the input words c[2f] = (x4f, x4f+2) and c[2f+1] = (x4f+1, x4f+3), one
   __smlad each. The sums (biases shifted up as well) are multiples of 2^(8-b); the register
   shifted back down holds the low 32 - (8 - b) bits of the accumulator exactly, enough while
   bits_accumulator <= 32 - (8 - b), and kws_wrap32 keeps the low bits_accumulator bits.
   KWS_NF22 is one field for two output channels (words u0, u1) at two positions (inputs ca, cb),
   KWS_NF12 at one (c); the H forms for a last field holding x4f only. KWS_EF22 and KWS_EH22 are
   KWS_NF22 and KWS_NH22 with the four (two) int16 pairs already expanded (e[0], e[1]: sxtb16 of
   the two channels' masked field, e[2], e[3]: rotated by 8). Elsewhere the same sums in
   portable C. */
#if defined(__ARM_FEATURE_DSP)
#define KWS_SXT(t) ((uint32_t)__sxtb16(t))
#define KWS_SXT8(t) ((uint32_t)kws_sxtb16_ror8(t))
#define KWS_SMLAD(p, c, acc) ((uint32_t)__smlad((int32_t)(p), (int32_t)(c), (int32_t)(acc)))
#else
#define KWS_S8(t) (((int32_t)((t) & 0xFFu) ^ 0x80) - 0x80)
#define KWS_SXT(t) KWS_PACK(KWS_S8(t), KWS_S8((t) >> 16))
#define KWS_SXT8(t) KWS_PACK(KWS_S8((t) >> 8), KWS_S8((t) >> 24))
#define KWS_SMLAD(p, c, acc) ((acc) + (uint32_t)(KWS_LO(p) * KWS_LO(c)) + (uint32_t)(KWS_HI(p) * KWS_HI(c)))
#endif
#define KWS_NF22(a00, a01, a10, a11, u0, u1, sh, m, ca, cb) do { \\
        uint32_t t0_ = ((u0) << (sh)) & (m), t1_ = ((u1) << (sh)) & (m); \\
        uint32_t p0_ = KWS_SXT(t0_), p1_ = KWS_SXT(t1_); \\
        (a00) = KWS_SMLAD(p0_, (ca)[0], a00); (a01) = KWS_SMLAD(p0_, (cb)[0], a01); \\
        (a10) = KWS_SMLAD(p1_, (ca)[0], a10); (a11) = KWS_SMLAD(p1_, (cb)[0], a11); \\
        p0_ = KWS_SXT8(t0_); p1_ = KWS_SXT8(t1_); \\
        (a00) = KWS_SMLAD(p0_, (ca)[1], a00); (a01) = KWS_SMLAD(p0_, (cb)[1], a01); \\
        (a10) = KWS_SMLAD(p1_, (ca)[1], a10); (a11) = KWS_SMLAD(p1_, (cb)[1], a11); \\
    } while (0)
#define KWS_NH22(a00, a01, a10, a11, u0, u1, sh, m, ca, cb) do { \\
        uint32_t p0_ = KWS_SXT(((u0) << (sh)) & (m)), p1_ = KWS_SXT(((u1) << (sh)) & (m)); \\
        (a00) = KWS_SMLAD(p0_, (ca)[0], a00); (a01) = KWS_SMLAD(p0_, (cb)[0], a01); \\
        (a10) = KWS_SMLAD(p1_, (ca)[0], a10); (a11) = KWS_SMLAD(p1_, (cb)[0], a11); \\
    } while (0)
#define KWS_EF22(a00, a01, a10, a11, e, ca, cb) do { \\
        (a00) = KWS_SMLAD((e)[0], (ca)[0], a00); (a01) = KWS_SMLAD((e)[0], (cb)[0], a01); \\
        (a10) = KWS_SMLAD((e)[1], (ca)[0], a10); (a11) = KWS_SMLAD((e)[1], (cb)[0], a11); \\
        (a00) = KWS_SMLAD((e)[2], (ca)[1], a00); (a01) = KWS_SMLAD((e)[2], (cb)[1], a01); \\
        (a10) = KWS_SMLAD((e)[3], (ca)[1], a10); (a11) = KWS_SMLAD((e)[3], (cb)[1], a11); \\
    } while (0)
#define KWS_EH22(a00, a01, a10, a11, e, ca, cb) do { \\
        (a00) = KWS_SMLAD((e)[0], (ca)[0], a00); (a01) = KWS_SMLAD((e)[0], (cb)[0], a01); \\
        (a10) = KWS_SMLAD((e)[1], (ca)[0], a10); (a11) = KWS_SMLAD((e)[1], (cb)[0], a11); \\
    } while (0)
#define KWS_NF12(a0, a1, u0, u1, sh, m, c) do { \\
        uint32_t t0_ = ((u0) << (sh)) & (m), t1_ = ((u1) << (sh)) & (m); \\
        (a0) = KWS_SMLAD(KWS_SXT8(t0_), (c)[1], KWS_SMLAD(KWS_SXT(t0_), (c)[0], a0)); \\
        (a1) = KWS_SMLAD(KWS_SXT8(t1_), (c)[1], KWS_SMLAD(KWS_SXT(t1_), (c)[0], a1)); \\
    } while (0)
#define KWS_NH12(a0, a1, u0, u1, sh, m, c) do { \\
        (a0) = KWS_SMLAD(KWS_SXT(((u0) << (sh)) & (m)), (c)[0], a0); \\
        (a1) = KWS_SMLAD(KWS_SXT(((u1) << (sh)) & (m)), (c)[0], a1); \\
    } while (0)
"""

_ROUND_DIV = """
/* v / n rounded half away from zero (global average pooling of output codes). */
static int64_t kws_round_div(int64_t v, int64_t n)
{
    return v >= 0 ? (2 * v + n) / (2 * n) : -((-2 * v + n) / (2 * n));
}
"""

_WRAP = """
/* Two's-complement value of the low bits of an accumulator register (mask = 2^bits - 1,
   half = 2^(bits-1)): the wraparound of a bits-wide adder. */
static int64_t kws_wrap(uint64_t reg, uint64_t mask, int64_t half)
{
    int64_t v = (int64_t)(reg & mask);
    return v >= half ? v - 2 * half : v;
}
"""

_HELPERS = """
/* v / 2^shift rounded half away from zero (v * 2^-shift when shift < 0), saturated to [lo, hi]. */
static int32_t kws_requant(int64_t v, int shift, int32_t lo, int32_t hi)
{
    if (shift > 0) {
        int64_t half = (int64_t)1 << (shift - 1);
        v = v >= 0 ? (v + half) >> shift : -((-v + half) >> shift);
    } else if (shift < 0) {
        v = v < lo ? lo : v > hi ? hi : v;
        v *= (int64_t)1 << -shift;
    }
    return (int32_t)(v < lo ? lo : v > hi ? hi : v);
}
"""


def _class_names_define(class_names) -> str:
    """``KWS_CLASS_NAMES``: the name of every score, by index (for ``const char *names[] = ...``)."""
    if not class_names:
        return ""
    quoted = ", ".join('"' + str(n).replace("\\", "\\\\").replace('"', '\\"') + '"' for n in class_names)
    return f"#define KWS_CLASS_NAMES {{{quoted}}}\n"


def _header(int_model, class_names=None) -> str:
    first, last = int_model.layers[0], int_model.layers[-1]
    c, h, w = first.input_shape
    lo, hi = code_limits(first.bits_inputs)
    return f"""/* Generated by deploy/c_export.py: integer-only keyword spotting. Do not edit.
 *
 * Input: one clip of {c}x{h}x{w} MFCC features, row-major (channel, frame, coefficient), as
 * integer codes code = round_half_away_from_zero(x * 2^KWS_INPUT_FL) saturated to
 * [KWS_INPUT_MIN, KWS_INPUT_MAX]; kws_input_t is int8_t for inputs of up to 8 bits, else int16_t.
 * Output: KWS_N_CLASSES scores = logits * 2^KWS_SCORE_FL; kws_infer returns the argmax class.
 * Not reentrant: activations live in one static arena. Build: cc -std=c99 -O2 model.c main.c
 */
#ifndef KWS_MODEL_H
#define KWS_MODEL_H

#include <stdint.h>

#define KWS_INPUT_CHANNELS {c}
#define KWS_INPUT_FRAMES {h}
#define KWS_INPUT_COEFFICIENTS {w}
#define KWS_N_INPUTS {c * h * w}
#define KWS_N_CLASSES {last.output_shape[0]}
#define KWS_INPUT_BITS {first.bits_inputs}
#define KWS_INPUT_FL {first.fl_inputs}
#define KWS_INPUT_MIN ({lo})
#define KWS_INPUT_MAX {hi}
#define KWS_SCORE_FL {last.fl_outputs}
{_class_names_define(class_names)}#define KWS_N_LAYERS {len(int_model.layers)}
#define KWS_LAYER_NAMES {{{", ".join('"' + layer.name + '"' for layer in int_model.layers)}}}

typedef {_data_ctype(first.bits_inputs)} kws_input_t;

int kws_infer(const kws_input_t *features, int32_t *scores);

#endif
"""


def _source(int_model):
    layers = int_model.layers
    pairs = _buffers(int_model)
    # Outputs alternate between the arena's start and end; interior layers need in + out bytes.
    arena = max([pairs[0][1], pairs[-1][0]] + [a + b for a, b in pairs[1:-1]])
    arena += arena % 2
    parts = ["/* Generated by deploy/c_export.py. Do not edit. */\n#include \"model.h\"\n"]
    parts += [_weights_c(layer) for layer in layers]
    parts.append(f"\n/* Activation arena: {arena} bytes, int16_t so either data type is aligned. */\n"
                 f"static int16_t kws_arena[{arena // 2}];\n")
    parts.append((_WRAP if not all(_packed(layer) or _dw_packed(layer) for layer in layers) else "") + _HELPERS + (_ROUND_DIV if any(layer.avgpool for layer in layers) else ""))
    packed = [layer for layer in layers if _packed(layer)]
    if packed or any(_dw_packed(layer) for layer in layers):
        parts.append(_PACKED)
    if any(_narrow(layer) for layer in layers):
        parts.append(_NARROW)
    if packed:
        parts.append(f"\n/* The packed inputs of the positions one output reads (or of a fully connected layer). */\n"
                     f"static uint32_t kws_col[{max(_col_words(layer) for layer in packed)}];\n")
    for layer, following in zip(layers, layers[1:] + (None,)):
        if _packed(layer):
            parts.append(_linear_dsp_c(layer, following) if layer.kind == "linear" else _conv_dsp_c(layer, following))
        elif _dw_packed(layer):
            parts.append(_dw_packed_c(layer, following))
        else:
            parts.append(_linear_c(layer, following) if layer.kind == "linear" else _conv_c(layer, following))
    calls = []
    src = "features"
    for i, (layer, following) in enumerate(zip(layers, layers[1:] + (None,))):
        if following is None:
            dst = "scores"
        else:
            offset = 0 if i % 2 == 0 else arena - pairs[i][1]
            dst = f"({_out_ctype(following)} *)(void *)((unsigned char *)kws_arena + {offset})"
        calls.append(f"    KWS_LAYER_HOOK({i});\n    kws_{layer.name}({src}, {dst});")
        src = dst
    calls.append(f"    KWS_LAYER_HOOK({len(layers)});")
    parts.append("""
/* KWS_LAYER_HOOK(i) runs before layer i and after the last (i = KWS_N_LAYERS): nothing, unless
   the build defines it as a function's name (the firmware's per-layer instruction counts). */
#ifdef KWS_LAYER_HOOK
void KWS_LAYER_HOOK(int layer);
#else
#define KWS_LAYER_HOOK(layer) ((void)0)
#endif

int kws_infer(const kws_input_t *features, int32_t *scores)
{
    int k, best = 0;
%s
    for (k = 1; k < KWS_N_CLASSES; k++)
        if (scores[k] > scores[best])
            best = k;
    return best;
}
""" % "\n".join(calls))
    return "".join(parts)


def export_c(int_model: IntegerModel, outdir: str | os.PathLike, class_names: Sequence[str] | None = None) -> list[Path]:

    """Write model.h, model.c and main.c into ``outdir`` (atomically); returns their paths.
    ``class_names`` (the checkpoint's, one per output) become ``KWS_CLASS_NAMES`` in model.h."""
    outdir = Path(outdir)
    if class_names is not None and len(class_names) != int_model.layers[-1].output_shape[0]:
        raise ValueError(f"{len(class_names)} class names for {int_model.layers[-1].output_shape[0]} outputs")
    files = {
        "model.h": _header(int_model, class_names),
        "model.c": _source(int_model),
        "main.c": (_TEMPLATES / "main.c").read_text(encoding="utf-8"),
    }
    paths = []
    for name, text in files.items():
        write_text(outdir / name, text)
        paths.append(outdir / name)
    return paths
