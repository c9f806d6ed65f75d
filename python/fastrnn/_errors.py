"""Exception types that satisfy both fastrnn's contract (DESIGN §6: ValueError for a bad value
or shape, TypeError for a bad type or dtype) and what PyTorch raises for the same mistake
(mostly RuntimeError; ValueError for a dtype), so code written against torch.nn catches them."""


class ArgumentError(ValueError, RuntimeError):
    """A wrong shape, size or value (torch: RuntimeError)."""


class ArgumentTypeError(TypeError, ValueError, RuntimeError):
    """A wrong type or dtype (torch: TypeError for a size that is no int, ValueError for the
    layers' input dtype, RuntimeError for the cells')."""
