"""What HW2 reported (../shared/HW2.md), kept in one place so analysis and report can set it beside the truth."""

REPORTED = {
    # training time (s), training loss (last minibatch of the last epoch), accuracy as printed and as a fraction
    # (HW2 printed 1a's as 0.9566 and the others as percentages), GMACs, params
    "1a": {
        "train_s": 0.166,
        "train_loss": 0.0233,
        "accuracy": "0.9566 (ratio metric)",
        "accuracy_value": 0.9566,
        "gmacs": 0.0,
        "params": 57,
    },
    "1b": {
        "train_s": 0.297,
        "train_loss": 0.1608,
        "accuracy": "56.73% (ratio metric)",
        "accuracy_value": 0.5673,
        "gmacs": 0.02,
        "params": 42_750,
    },
    "2a": {
        "train_s": 1838.7,
        "train_loss": 0.015110,
        "accuracy": "46.74%",
        "accuracy_value": 0.4674,
        "gmacs": 1.59,
        "params": 1_580_000,
    },
    "2b": {
        "train_s": 1859.5,
        "train_loss": 0.000380,
        "accuracy": "45.92%",
        "accuracy_value": 0.4592,
        "gmacs": 1.59,
        "params": 1_580_000,
    },
}

MAC_NOTES = {
    "1a": "ptflops counted a batch of 436 rows folded into one pass and rounded to 0.0 GMAC",
    "1b": "ptflops counted a batch of 465 rows folded into one pass (0.02 GMAC)",
    "2a": "ptflops with an odd input shape: 1.59 GMAC is about 1000x one forward pass (~0.0016 GMAC)",
    "2b": "measured on model 2a by mistake: both MACs and parameters are 2a's",
}
