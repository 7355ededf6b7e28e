"""Names of the `sparsecc` domain (design.md, "Sparse ops")."""

from __future__ import annotations

DOMAIN = "sparsecc"
DOMAIN_VERSION = 1

BSR_MATMUL = "BsrMatMul"
NM_MATMUL = "NmMatMul"
CSR_MATMUL = "CsrMatMul"
SPARSE_OP_TYPES = (BSR_MATMUL, NM_MATMUL, CSR_MATMUL)

# op type -> names of the constant inputs after X (the optional bias comes last)
WEIGHT_INPUTS = {
    BSR_MATMUL: ("values", "col_indices", "row_ptr"),
    NM_MATMUL: ("values", "indices"),
    CSR_MATMUL: ("values", "col_indices", "row_ptr"),
}
