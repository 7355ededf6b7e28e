"""Weights as bound parameters of `main`, not constants of the executable.

A Relax constant travels through `tvm.compile` into the executable and from there into the
exported library: BERT-large's 1.3 GB of weights were copied several times on the way (issue
14). After the Relax pipeline has folded what it can (transposes, reshapes of weights), every
constant of at least `MIN_BYTES` becomes a parameter of `main`, appended after the inputs; the
`CompiledModel` holds the arrays and passes them on every call. The kernels read the same
buffers either way (a `call_tir` argument is a buffer whether it is a constant or a parameter),
so nothing changes in the generated code; the sparsity structure the kernels exploit stays in
the TIR.
"""

from __future__ import annotations

MIN_BYTES = 16 << 10  # smaller constants (shapes, scalars, small biases) stay in the executable


def lift_weights(module, min_bytes: int = MIN_BYTES):
    """(module whose `main` takes its big constants as parameters after the inputs, their tensors).

    A constant used twice becomes one parameter. The tensors are the constants' own (no copy).
    """
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class _Lift(PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.params: list = []  # relax.Var, in parameter order
            self.tensors: list = []  # the tensor each parameter is bound to
            self._seen: dict = {}  # constant -> its parameter

        def visit_generic_const_(self, const):
            tensor = const.value
            if not isinstance(const.ty, relax.TensorType) or _nbytes(tensor) < min_bytes:
                return const
            if const not in self._seen:
                var = relax.Var(f"weight{len(self.params)}", const.ty)
                self._seen[const] = var
                self.params.append(var)
                self.tensors.append(tensor)
            return self._seen[const]

    main = module["main"]
    lift = _Lift(module)
    body = lift.visit_expr(main.body)
    if not lift.params:
        return module, []
    lifted = relax.Function(list(main.params) + lift.params, body, main.ret_ty, main.is_pure, main.attrs)
    module = module.clone()
    module["main"] = lifted
    return module, lift.tensors


def _nbytes(tensor) -> int:
    count = 1
    for dim in tensor.shape:
        count *= int(dim)
    return count * ((tensor.dtype.bits * tensor.dtype.lanes + 7) // 8)
