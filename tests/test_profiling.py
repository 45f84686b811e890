"""The analytical cost model: exact counts for the float model, a hand-worked pruned and quantized
case, geometry derived from the model (not hard-coded), and the printed units."""
from model.model import KeywordLeNet5Clone
from fixedpoint.layers import LayerQuantization
from optimization.profiling import format_profile, profile_model


def _pruned_quantized():
    model = KeywordLeNet5Clone()
    model.conv1.prune_kernels([0])
    model.conv2.prune_kernels([1, 2])
    model.fc3.prune_kernels(range(10))
    for layer in (model.conv1, model.conv2):
        layer.quantization = LayerQuantization(bits_inputs=8, bits_weights=4, bits_accumulator=32,
                                               bits_outputs=8, il_inputs=3, il_weights=0, il_outputs=3)
    for layer in (model.fc3, model.fc4):
        layer.quantization = LayerQuantization(bits_inputs=8, bits_weights=8, bits_accumulator=32,
                                               bits_outputs=8, il_inputs=3, il_weights=0, il_outputs=3)
    return model


def test_float_model_counts():
    p = profile_model(KeywordLeNet5Clone())
    # conv1: 8 filters x 1 channel x 9 taps x 98*11 positions; conv2: 8 x 8 x 9 x 47*3;
    # fc3: 64 x (8 channels * 23); fc4: 4 x 64.
    assert [layer.macs for layer in p.layers] == [77616, 81216, 11776, 256]
    assert p.macs == 170864
    # conv1 8*9+8, conv2 8*8*9+8, fc3 184*64+64, fc4 64*4+4
    assert [layer.parameters for layer in p.layers] == [80, 584, 11840, 260]
    assert p.parameters == 12764
    assert p.weight_bits == 12764 * 32 == 408448
    # outputs: 8*98*11 + 8*47*3 + 64 + 4
    assert [layer.activation_values for layer in p.layers] == [8624, 1128, 64, 4]
    assert p.activation_values == 9820
    assert p.activation_bits == 9820 * 32 == 314240


def test_pruned_quantized_hand_worked():
    p = profile_model(_pruned_quantized())
    conv1, conv2, fc3, fc4 = p.layers
    # conv1: 7 live filters, 1 input channel
    #   MACs 7*1*9*(98*11) = 67914; params 7*9 + 7 = 70; weight bits 70*4 = 280
    #   activations 7*98*11 = 7546 at 8 bits = 60368
    assert (conv1.live_kernels, conv1.live_inputs) == (7, 1)
    assert (conv1.macs, conv1.parameters, conv1.weight_bits) == (67914, 70, 280)
    assert (conv1.activation_values, conv1.activation_bits) == (7546, 60368)
    # conv2: 6 live filters reading the 7 live conv1 channels
    #   MACs 6*7*9*(47*3) = 53298; params 6*7*9 + 6 = 384; weight bits 384*4 = 1536
    #   activations 6*47*3 = 846 at 8 bits = 6768
    assert (conv2.live_kernels, conv2.live_inputs) == (6, 7)
    assert (conv2.macs, conv2.parameters, conv2.weight_bits) == (53298, 384, 1536)
    assert (conv2.activation_values, conv2.activation_bits) == (846, 6768)
    # fc3: 54 live neurons reading 6 live conv2 channels x 23 features = 138
    #   MACs 54*138 = 7452; params 7452 + 54 = 7506; weight bits 7506*8 = 60048
    #   activations 54 at 8 bits = 432
    assert (fc3.live_kernels, fc3.live_inputs) == (54, 138)
    assert (fc3.macs, fc3.parameters, fc3.weight_bits) == (7452, 7506, 60048)
    assert (fc3.activation_values, fc3.activation_bits) == (54, 432)
    # fc4: 4 outputs reading 54 live fc3 neurons
    #   MACs 4*54 = 216; params 216 + 4 = 220; weight bits 220*8 = 1760; activations 4 -> 32 bits
    assert (fc4.live_kernels, fc4.live_inputs) == (4, 54)
    assert (fc4.macs, fc4.parameters, fc4.weight_bits) == (216, 220, 1760)
    assert (fc4.activation_values, fc4.activation_bits) == (4, 32)
    # totals
    assert p.macs == 67914 + 53298 + 7452 + 216 == 128880
    assert p.parameters == 70 + 384 + 7506 + 220 == 8180
    assert p.weight_bits == 280 + 1536 + 60048 + 1760 == 63624
    assert p.activation_values == 7546 + 846 + 54 + 4 == 8450
    assert p.activation_bits == 8450 * 8 == 67600


def test_geometry_comes_from_the_model_and_input():
    # 99 frames: conv1 97x11 -> pool 48x5 -> conv2 46x3 -> pool 23x1 (same fc3 input).
    p = profile_model(KeywordLeNet5Clone(), input_shape=(1, 99, 13))
    # conv1 8*9*97*11 = 76824; conv2 8*8*9*46*3 = 79488; fc3 184*64; fc4 64*4
    assert [layer.macs for layer in p.layers] == [76824, 79488, 11776, 256]
    # narrower model: conv1 4 filters, conv2 5, fc3 16
    p = profile_model(KeywordLeNet5Clone(widths=(4, 5, 16)))
    # conv1 4*9*1078 = 38808; conv2 5*4*9*141 = 25380; fc3 16*(5*23) = 1840; fc4 4*16 = 64
    assert [layer.macs for layer in p.layers] == [38808, 25380, 1840, 64]
    # conv1 4*9+4, conv2 5*4*9+5, fc3 16*115+16, fc4 4*16+4
    assert p.parameters == 40 + 185 + 1856 + 68


def test_profile_keeps_training_mode():
    model = KeywordLeNet5Clone().train()
    profile_model(model)
    assert model.training
    model.eval()
    profile_model(model)
    assert not model.training


def test_format_profile_units():
    text = format_profile(profile_model(KeywordLeNet5Clone()), accuracy=0.8956)
    # 408448 bits = 51056 bytes = 51.1 kB; 314240 bits = 39280 bytes = 39.3 kB
    assert text == ("MACs/classification: 170864\n"
                    "Number of Parameters: 12764\n"
                    "Model Size:\n"
                    "  - Weights: 51.1 kB (408448 bits)\n"
                    "  - Activations: 39.3 kB (314240 bits)\n"
                    "Accuracy: 89.56%")
    text = format_profile(profile_model(_pruned_quantized()))
    # 63624 bits = 7953 bytes = 8.0 kB; 67600 bits = 8450 bytes = 8.4 kB; no accuracy given
    assert text.splitlines()[3:] == ["  - Weights: 8.0 kB (63624 bits)",
                                     "  - Activations: 8.4 kB (67600 bits)"]

