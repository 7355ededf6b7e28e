// 2:4 sparse tensor-core GEMM: Y[M, N] = X[M, K] @ W^T (+ bias), W 2:4 along K, known at compile time.
//
// One `mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.{f16,bf16}` computes a 16x8 tile of
// Y^T: A is 16 rows of W (the sparse operand, 16 x 32 logical, 16 x 16 stored), B is X^T (32 x 8,
// "col" = 8 token rows of X), fp32 accumulators. The weights arrive pre-reordered by
// `nm_cuda.pack_2to4` so each lane loads its A fragment (4 x .b32) with one 16-byte load and its
// metadata with one 4-byte load; X goes global -> shared with cp.async (double buffered, 64 K per
// stage) and each lane reads its B fragment as 32-bit words (row stride padded: no bank conflicts).
//
// Fragment layouts (PTX ISA, "Matrix fragments for sparse mma.m16n8k32 with .f16/.bf16", and
// "Sparse matrix storage"), g = lane >> 2, t = lane & 3:
//   A reg j (halves h = 0, 1): row g + 8 * (j & 1), 4-chunk t + 4 * (j >> 1), kept value h of the chunk
//   B reg j (halves h):        k = 2t + h + 8j, token g
//   C/D i:                     row g + 8 * (i >> 1), token 2t + (i & 1)
//   metadata (selector 0, lanes t = 0, 1): bits [4c, 4c+4) of the low half: row g, chunk 4t + c;
//   high half: row g + 8; in each nibble the lower 2 bits are the first (smaller) kept position.
// Entry points: sp24_<in>_<out>_<tile>, in f16|bf16, out f32|f16|bf16, tile big (64x64) | small (64x8).

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define SP24_KT 64            // logical K per shared-memory stage
#define SP24_LD (SP24_KT + 8) // halves per shared row: 36 words, lanes g*36+t hit distinct banks

template <bool BF16>
__device__ __forceinline__ void mma_sp_16832(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4],
                                             uint32_t e) {
  if constexpr (BF16) {
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  } else {
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  }
}

__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem, bool valid) {
  uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  int bytes = valid ? 16 : 0; // 0: the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}

__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::);
}

template <typename T> struct IsBf16 { static constexpr bool value = false; };
template <> struct IsBf16<__nv_bfloat16> { static constexpr bool value = true; };

template <typename OutT> __device__ __forceinline__ OutT to_out(float v);
template <> __device__ __forceinline__ float to_out<float>(float v) { return v; }
template <> __device__ __forceinline__ __half to_out<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 to_out<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// WO x WT warps; a warp computes MO 16-row tiles of W x NT 8-token tiles of X.
// X: [M, K] with K % 8 == 0; Wp/E: [Np/16, Kp/32, 32 lanes]; Np % (16*MO*WO) == 0, Kp % 64 == 0.
template <typename T, typename OutT, int WO, int WT, int MO, int NT>
__device__ __forceinline__ void sp24_gemm(const T *__restrict__ X, const uint4 *__restrict__ Wp,
                                          const uint32_t *__restrict__ E, const float *__restrict__ bias,
                                          OutT *__restrict__ Y, int M, int N, int K, int Kp) {
  constexpr bool BF16 = IsBf16<T>::value;
  constexpr int BT = 8 * NT * WT; // tokens per CTA
  constexpr int CHUNKS = BT * SP24_KT / 8;
  __shared__ __align__(16) T xs[2][BT][SP24_LD];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wo = warp % WO, wt = warp / WO, g = lane >> 2, t = lane & 3;
  const int tile0 = blockIdx.x * (MO * WO) + wo * MO;
  const int tok0 = blockIdx.y * BT;
  const int ksteps = Kp / 32, stages = Kp / SP24_KT;

  auto load = [&](int buf, int k0) {
    for (int c = threadIdx.x; c < CHUNKS; c += 32 * WO * WT) {
      const int row = c / (SP24_KT / 8), col = (c % (SP24_KT / 8)) * 8;
      const int tok = tok0 + row, k = k0 + col;
      const bool valid = tok < M && k < K;
      cp_async_16(&xs[buf][row][col], valid ? X + (size_t)tok * K + k : X, valid);
    }
  };

  float acc[MO][NT][4];
#pragma unroll
  for (int mo = 0; mo < MO; ++mo)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mo][nt][i] = 0.0f;

  load(0, 0);
  cp_async_wait_all();
  __syncthreads();
  for (int st = 0; st < stages; ++st) {
    const int buf = st & 1;
    if (st + 1 < stages) load(buf ^ 1, (st + 1) * SP24_KT);
#pragma unroll
    for (int ks = 0; ks < SP24_KT / 32; ++ks) {
      const int s = st * (SP24_KT / 32) + ks;
      uint32_t a[MO][4], e[MO];
#pragma unroll
      for (int mo = 0; mo < MO; ++mo) {
        const size_t idx = ((size_t)(tile0 + mo) * ksteps + s) * 32 + lane;
        const uint4 v = __ldg(Wp + idx);
        a[mo][0] = v.x, a[mo][1] = v.y, a[mo][2] = v.z, a[mo][3] = v.w;
        e[mo] = __ldg(E + idx);
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const T *row = &xs[buf][(wt * NT + nt) * 8 + g][ks * 32 + 2 * t];
        uint32_t b[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = *reinterpret_cast<const uint32_t *>(row + 8 * j);
#pragma unroll
        for (int mo = 0; mo < MO; ++mo) mma_sp_16832<BF16>(acc[mo][nt], a[mo], b, e[mo]);
      }
    }
    cp_async_wait_all();
    __syncthreads();
  }

#pragma unroll
  for (int mo = 0; mo < MO; ++mo)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int o = (tile0 + mo) * 16 + g + 8 * (i >> 1);
        const int tok = tok0 + (wt * NT + nt) * 8 + 2 * t + (i & 1);
        if (o < N && tok < M) {
          const float v = acc[mo][nt][i] + (bias ? bias[o] : 0.0f);
          Y[(size_t)tok * N + o] = to_out<OutT>(v);
        }
      }
}

#define SP24_ENTRY(NAME, T, OUT, WO, WT, MO, NT)                                                      \
  extern "C" __global__ void __launch_bounds__(32 * WO * WT)                                          \
      NAME(const T *X, const uint4 *Wp, const uint32_t *E, const float *bias, OUT *Y, int M, int N, int K, \
           int Kp) {                                                                                  \
    sp24_gemm<T, OUT, WO, WT, MO, NT>(X, Wp, E, bias, Y, M, N, K, Kp);                                \
  }

// big: 2x2 warps of 32 rows x 32 tokens (CTA 64 x 64); small (M <= 16): 4 warps of 16 rows x 8 tokens.
SP24_ENTRY(sp24_f16_f32_big, __half, float, 2, 2, 2, 4)
SP24_ENTRY(sp24_f16_f16_big, __half, __half, 2, 2, 2, 4)
SP24_ENTRY(sp24_bf16_f32_big, __nv_bfloat16, float, 2, 2, 2, 4)
SP24_ENTRY(sp24_bf16_bf16_big, __nv_bfloat16, __nv_bfloat16, 2, 2, 2, 4)
SP24_ENTRY(sp24_f16_f32_small, __half, float, 4, 1, 1, 1)
SP24_ENTRY(sp24_f16_f16_small, __half, __half, 4, 1, 1, 1)
SP24_ENTRY(sp24_bf16_f32_small, __nv_bfloat16, float, 4, 1, 1, 1)
SP24_ENTRY(sp24_bf16_bf16_small, __nv_bfloat16, __nv_bfloat16, 4, 1, 1, 1)
