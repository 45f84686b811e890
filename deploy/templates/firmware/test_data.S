/* The test clips' feature codes and the Python integer engine's scores, as the binary files
 * beside this one hold them (little endian), in a section of their own (.kws_test_data). */
    .section .kws_test_data, "a"
    .balign 4
    .global kws_test_features
kws_test_features:
    .incbin "test_features.bin"
    .balign 4
    .global kws_test_scores
kws_test_scores:
    .incbin "test_scores.bin"
