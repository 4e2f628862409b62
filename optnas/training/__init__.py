"""Training: one fine-tuning loop (SGD, SAM/ASAM, a loss hook for early exits), supernet
sandwich training and final training of a chosen architecture.

The names of the choices live here, free of torch, for the command line's option checks.
"""

# Fine-tuning optimisers: plain SGD, or sharpness-aware SAM / ASAM around it.
OPTIMIZERS = ("sgd", "sam", "asam")
# How early exits are trained: EDANAS's joint loss, or NACHOS's confidence loss.
EE_METHODS = ("joint", "confidence")
