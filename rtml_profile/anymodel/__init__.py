"""Any model: a user's own ONNX file or a torchvision model, profiled end to end (`rtml-profile profile`).

source.py   what the model is: its file, a key that can never be a zoo model's, torchvision export + PyTorch check
io.py       its inputs and outputs: named dynamic dimensions, generated or .npz inputs, integer ranges
checks.py   output checks against the fp32 ONNX Runtime CPU reference, per output, and --locate
profile.py  analyze + bench on every runtime that takes ONNX + checks, rows and the model's record
"""
