/* The test clips' feature codes and the Python integer engine's scores, the recording the stream
 * replays and predict.py's detections on it (both empty without the stream), as the binary files
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
    .balign 4
    .global kws_test_stream
kws_test_stream:
    .incbin "test_stream.bin"
    .balign 4
    .global kws_test_detections
kws_test_detections:
    .incbin "test_detections.bin"
