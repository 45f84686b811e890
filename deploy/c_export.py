"""C99 code generation from an ``IntegerModel``: the same integer arithmetic, bit for bit.

Generated files: ``model.h`` (interface), ``model.c`` (weights and the network), ``main.c`` (a
driver reading feature codes, one clip per line). Choices, each for a microcontroller target:

* Weights are stored at their bitwidth: 4 bits or less packed two per byte (low nibble first,
  unpacked with sign extension where they are used), up to 8 bits as int8_t, else int16_t.
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
* Activations live in one static arena: layer outputs alternate between its two ends, so it only
  needs the largest input+output pair. No malloc, no float.

``kws_infer`` takes int8_t features when the first layer's bits_inputs <= 8, else int16_t (typedef
``kws_input_t``), writes the scores (logits * 2^KWS_SCORE_FL) and returns the argmax class.
"""
from pathlib import Path

import numpy as np

from fixedpoint.fixed_point import code_limits
from utils.atomic import write_text

_TEMPLATES = Path(__file__).parent / "templates"
_SCORE_BYTES = 4  # int32_t scores


def _data_ctype(bits):
    return "int8_t" if bits <= 8 else "int16_t"


def _data_bytes(bits):
    return 1 if bits <= 8 else 2


def _weight_bytes(layer):
    if _dsp(layer):
        return layer.weight.shape[0] * _row_length(layer)[1]
    n = layer.weight.size
    if layer.bits_weights <= 4:
        return (n + 1) // 2
    return n * _data_bytes(layer.bits_weights)


def _accumulator_bits(bits):
    """Width of the narrowest C integer type that holds a ``bits``-wide accumulator."""
    return 16 if bits <= 16 else 32 if bits <= 32 else 64


def _bias_bytes(layer):
    return layer.bias.size * _accumulator_bits(layer.bits_accumulator) // 8


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


def c_model_memory(int_model):
    """(flash_bytes, ram_bytes) of the generated code: flash = weight and bias arrays as stored;
    RAM = the largest input+output pair of activation buffers of any layer (the caller's features
    for the first layer and int32 scores for the last included)."""
    flash = sum(_weight_bytes(layer) + _bias_bytes(layer) for layer in int_model.layers)
    ram = max(a + b for a, b in _buffers(int_model))
    return flash, ram


def _array(ctype, name, values, comment):
    body = ",\n".join("    " + ", ".join(str(int(v)) for v in values[i:i + 16])
                      for i in range(0, len(values), 16))
    return f"/* {comment} */\nstatic const {ctype} {name}[{len(values)}] = {{\n{body}\n}};\n"


def _dsp(layer):
    """Whether the layer gets the packed kernel (dual 16-bit MACs on a core with the DSP extension,
    the same arithmetic in portable C elsewhere): int8 weights, a 32-bit accumulator, and a
    fully connected layer or a conv without padding and without global average pooling."""
    return (4 < layer.bits_weights <= 8 and layer.bits_accumulator <= 32
            and (layer.kind == "linear" or (layer.kind == "conv" and tuple(layer.padding) == (0, 0)
                                            and not layer.avgpool)))


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
    if _dsp(layer):
        k, k4 = _row_length(layer)
        rows = np.zeros((layer.weight.shape[0], k4), dtype=np.int64)
        rows[:, :k] = layer.weight.reshape(layer.weight.shape[0], k)
        text = _array("int8_t", f"{name}_w", rows.reshape(-1), fmt + f", rows zero padded to {k4}")
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
    text += _array(bias_type, f"{name}_b", layer.bias,
                   f"bias codes at the accumulator scale, fl = {layer.fl_inputs + layer.fl_weights}")
    return text


def _register(layer):
    """C type of the accumulator register and the wrap arguments (mask, half) as literals."""
    bits = layer.bits_accumulator
    reg = f"uint{_accumulator_bits(bits)}_t"
    return reg, f"UINT64_C({hex((1 << bits) - 1)})", f"INT64_C({1 << (bits - 1)})"


def _store(layer, following, var, dest):
    """C statement that writes ``var`` (relu'd output codes) to ``dest`` in the next format."""
    if following is None:
        return f"{dest} = {var};"
    lo, hi = code_limits(following.bits_inputs)
    shift = layer.fl_outputs - following.fl_inputs
    return (f"{dest} = ({_data_ctype(following.bits_inputs)})"
            f"kws_requant({var}, {shift}, {lo}, {hi});")


def _out_ctype(following):
    return "int32_t" if following is None else _data_ctype(following.bits_inputs)


def _conv_c(layer, following):
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


def _linear_c(layer, following):
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


def _pack_lines(values, indent):
    """C statements filling kws_col from ``values`` (C expressions, zero padded to a multiple of
    4): each group of four v0..v3 becomes the words (v0, v2) and (v1, v3), so that one word of
    four int8 weights w0..w3 gives (w0, w2) with __sxtb16 and (w1, w3) with __sxtb16 of it
    rotated by 8 bits."""
    values = list(values) + ["0"] * (-len(values) % 4)
    lines = []
    for g in range(0, len(values), 4):
        v = values[g:g + 4]
        lines.append(f"{indent}kws_col[{g // 2}] = KWS_PACK({v[0]}, {v[2]});")
        lines.append(f"{indent}kws_col[{g // 2 + 1}] = KWS_PACK({v[1]}, {v[3]});")
    return "\n".join(lines)


_LOCAL_WORDS = 6   # packed inputs of at most this many words stay in registers


def _requant32(layer, value):
    """C expression rescaling the 32-bit ``value`` (a wrapped accumulator) to the output format."""
    lo, hi = code_limits(layer.bits_outputs)
    fn = "kws_requant32" if 0 < layer.output_shift < 32 else "kws_requant"
    return f"{fn}({value}, {layer.output_shift}, {lo}, {hi})"


def _conv_dsp_c(layer, following):
    """A conv without padding through the packed kernel: the window's inputs gathered once per
    position into kws_col (int16 pairs), then for each output channel a dot product of
    KWS_DOT4 steps. Max pooling takes the largest wrapped accumulator of the window and rescales
    it once: rescaling, saturation and relu are monotone, so this is the simulation's
    rescale-relu-then-pool."""
    c_in, h, w = layer.input_shape
    c_out, ch, cw = layer.conv_shape
    _, oh, ow = layer.output_shape
    kh, kw = layer.weight.shape[2:]
    sh, sw = layer.stride
    k, k4 = _row_length(layer)
    lo, hi = code_limits(layer.bits_outputs)
    bits = layer.bits_accumulator
    win = layer.maxpool or 1
    offsets = [f"p[{(c * h + ky) * w + kx}]" for c in range(c_in) for ky in range(kh) for kx in range(kw)]
    relu = "\n                if (v < 0)\n                    v = 0;" if layer.relu else ""
    store = _store(layer, following, "v", f"y[(o * {oh} + py) * {ow} + px]")
    steps = [f"                        KWS_DOT4(acc, wr + {4 * g}, kws_col + {2 * g});" for g in range(k4 // 4)]
    if k % 4 == 1:   # the last group holds one input: one multiply-accumulate, not a full step
        steps[-1] = (f"                        acc += (uint32_t)((int32_t)wr[{k - 1}] * "
                     f"KWS_LO(kws_col[{2 * (k4 // 4 - 1)}]));")
    unrolled = "\n".join(steps)
    local = ""
    if k4 // 2 <= _LOCAL_WORDS:   # few enough to live in registers: a local array the compiler scalarises
        local = f"\n                    uint32_t kws_col[{k4 // 2}];"
    return f"""
/* {layer.name}: {c_out} filters {c_in}x{kh}x{kw} over {c_in}x{h}x{w}, stride {sh}x{sw}{", relu" if layer.relu else ""}, {f"max pool {win}x{win} " if layer.maxpool else ""}-> {c_out}x{oh}x{ow} (packed kernel). */
static void kws_{layer.name}(const {_data_ctype(layer.bits_inputs)} *x, {_out_ctype(following)} *y)
{{
    int o, py, px, dy, dx;
    int32_t best[{c_out}];
    for (py = 0; py < {oh}; py++) {{
        for (px = 0; px < {ow}; px++) {{
            for (o = 0; o < {c_out}; o++)
                best[o] = INT32_MIN;
            for (dy = 0; dy < {win}; dy++) {{
                for (dx = 0; dx < {win}; dx++) {{
                    const {_data_ctype(layer.bits_inputs)} *p = x + (py * {win} + dy) * {sh * w} + (px * {win} + dx) * {sw};{local}
{_pack_lines(offsets, "                    ")}
                    for (o = 0; o < {c_out}; o++) {{
                        const int8_t *wr = {layer.name}_w + o * {k4};
                        uint32_t acc = (uint32_t)(int32_t){layer.name}_b[o];
                        int32_t v;
{unrolled}
                        v = kws_wrap32(acc, {bits});
                        if (v > best[o])
                            best[o] = v;
                    }}
                }}
            }}
            for (o = 0; o < {c_out}; o++) {{
                int32_t v = {_requant32(layer, "best[o]")};{relu}
                {store}
            }}
        }}
    }}
}}
"""


def _linear_dsp_c(layer, following):
    n_out, n_in = layer.weight.shape
    _, k4 = _row_length(layer)
    lo, hi = code_limits(layer.bits_outputs)
    relu = "\n        if (v < 0)\n            v = 0;" if layer.relu else ""
    full = n_in // 4 * 4
    tail = [f"x[{i}]" for i in range(full, n_in)]
    groups = k4 // 4
    steps = (f"        for (g = 0; g < {groups // 2 * 2}; g += 2) {{\n"
             f"            KWS_DOT4(acc, wr + 4 * g, kws_col + 2 * g);\n"
             f"            KWS_DOT4(acc, wr + 4 * g + 4, kws_col + 2 * g + 2);\n        }}")
    if groups % 2:
        steps += f"\n        KWS_DOT4(acc, wr + {4 * (groups - 1)}, kws_col + {2 * (groups - 1)});"
    tail_code = ("\n" + _pack_lines(tail, "    ").replace("kws_col[", f"kws_col[{full // 2} + ")) if tail else ""
    return f"""
/* {layer.name}: {n_in} -> {n_out}{", relu" if layer.relu else ""} (packed kernel) */
static void kws_{layer.name}(const {_data_ctype(layer.bits_inputs)} *x, {_out_ctype(following)} *y)
{{
    int o, g;
    for (g = 0; g < {full // 4}; g++) {{
        kws_col[2 * g] = KWS_PACK(x[4 * g], x[4 * g + 2]);
        kws_col[2 * g + 1] = KWS_PACK(x[4 * g + 1], x[4 * g + 3]);
    }}{tail_code}
    for (o = 0; o < {n_out}; o++) {{
        const int8_t *wr = {layer.name}_w + o * {k4};
        uint32_t acc = (uint32_t)(int32_t){layer.name}_b[o];
        int32_t v;
{steps}
        v = {_requant32(layer, f"kws_wrap32(acc, {layer.bits_accumulator})")};{relu}
        {_store(layer, following, "v", "y[o]")}
    }}
}}
"""


_PACKED = """
/* Packed kernel: two int16 values per 32-bit word (low half first); KWS_DOT4 adds the products
   of four int8 weights w[0..3] with the words c[0] = (x0, x2) and c[1] = (x1, x3) to a 32-bit
   register that wraps. With the DSP extension: one word load, __sxtb16 and two __smlad; elsewhere
   the same sum in portable C. Both are exact modulo 2^32, and kws_wrap32 keeps the low bits. */
#define KWS_PACK(a, b) ((uint32_t)(uint16_t)(a) | ((uint32_t)(uint16_t)(b) << 16))
#define KWS_LO(c) (((int32_t)((c) & 0xFFFFu) ^ 0x8000) - 0x8000)
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
#define KWS_DOT4(acc, w, c) do { \
        uint32_t kws_w_; \
        memcpy(&kws_w_, (w), 4); \
        (acc) = (uint32_t)__smlad(__sxtb16(kws_w_), (int32_t)(c)[0], (int32_t)(acc)); \
        (acc) = (uint32_t)__smlad(kws_sxtb16_ror8(kws_w_), (int32_t)(c)[1], (int32_t)(acc)); \
    } while (0)
#else
#define KWS_HI(c) (((int32_t)((c) >> 16) ^ 0x8000) - 0x8000)
#define KWS_DOT4(acc, w, c) do { \
        (acc) += (uint32_t)((w)[0] * KWS_LO((c)[0]) + (w)[1] * KWS_LO((c)[1]) \
                            + (w)[2] * KWS_HI((c)[0]) + (w)[3] * KWS_HI((c)[1])); \
    } while (0)
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

/* Two's-complement value of the low ``bits`` (at most 32) bits of a 32-bit register. */
static int32_t kws_wrap32(uint32_t reg, int bits)
{
    uint32_t half = (uint32_t)1 << (bits - 1);
    uint32_t low = bits == 32 ? reg : reg & ((half << 1) - 1);
    return (int32_t)((int64_t)(low ^ half) - (int64_t)half);
}
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


def _class_names_define(class_names):
    """``KWS_CLASS_NAMES``: the name of every score, by index (for ``const char *names[] = ...``)."""
    if not class_names:
        return ""
    quoted = ", ".join('"' + str(n).replace("\\", "\\\\").replace('"', '\\"') + '"' for n in class_names)
    return f"#define KWS_CLASS_NAMES {{{quoted}}}\n"


def _header(int_model, class_names=None):
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
{_class_names_define(class_names)}
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
    parts.append((_WRAP if not all(_dsp(layer) for layer in layers) else "") + _HELPERS + (_ROUND_DIV if any(layer.avgpool for layer in layers) else ""))
    packed = [layer for layer in layers if _dsp(layer)]
    if packed:
        parts.append(_PACKED)
        shared = [_row_length(layer)[1] // 2 for layer in packed
                  if layer.kind == "linear" or _row_length(layer)[1] // 2 > _LOCAL_WORDS]
        if shared:
            parts.append(f"\n/* The packed inputs of one position (or of a fully connected layer). */\n"
                         f"static uint32_t kws_col[{max(shared)}];\n")
    for layer, following in zip(layers, layers[1:] + (None,)):
        if _dsp(layer):
            parts.append(_linear_dsp_c(layer, following) if layer.kind == "linear" else _conv_dsp_c(layer, following))
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
        calls.append(f"    kws_{layer.name}({src}, {dst});")
        src = dst
    parts.append("""
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


def export_c(int_model, outdir, class_names=None):
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
