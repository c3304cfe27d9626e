package cuda

import (
	_ "embed"
	"fmt"
	"math"
	"unsafe"

	"github.com/loupe-dev/loupe/probe/compute"
)

// This file is sparse-autoencoder training on the GPU: the whole step
// (encoder GEMM, top-k selection, decode, hand-written backward, Adam, the
// decoder-norm handling and the dead-latent counters) runs on the backend's
// stream, its parameters and Adam moments stay in device memory, and only a
// handful of statistics come back per step. The sae package drives it
// (sae/gpu.go) through the same training loop as the CPU; this package
// knows nothing of it beyond the plain numbers in SAEConfig.
//
// The TopK architecture takes the sparse fast path: one dense GEMM (the
// encoder's forward, bf16 inputs with fp32 accumulation in the bf16 mode),
// a radix top-k per row, a decoder over the k active latents only, and the
// backward over the active (row, latent) pairs, grouped by latent with a
// counting sort so that each latent's gradient rows are written once.
// Standard, JumpReLU, BatchTopK and Matryoshka take a dense path (their
// decoder and backward are GEMMs over the [rows, latents] activations).

//go:embed sae.cu
var saeSource string

var saeKernelNames = []string{"sae_prep", "sae_colsum", "sae_mean2", "sae_bias_rows", "sae_fill_f32", "sae_topk",
	"sae_decode", "sae_count", "sae_dead", "sae_scan", "sae_fill", "sae_accum", "sae_project", "sae_act", "sae_ghist",
	"sae_gfind", "sae_batch_thr", "sae_resid", "sae_suffix", "sae_norms", "sae_l1", "sae_l1_dec", "sae_jump",
	"sae_jump_fin", "sae_mask", "sae_colany", "sae_adam", "sae_adam_unit", "sae_exp", "sae_cvt16"}

// Statistic slots of the step (ST_* in sae.cu).
const (
	stSSE = iota
	stPSSE
	stYY
	stL0
	stAuxSSE
	stDead
	stSparse
	stMean2
	stN = 12
)

// SAEConfig describes the SAE a SAETrainer trains: the architecture, the
// sizes and the loss hyperparameters (the sae package's TrainConfig, its
// defaults applied). Adam's come with each Update.
type SAEConfig struct {
	Arch             string // standard, topk, batchtopk, jumprelu or matryoshka
	DIn, DSAE, DOut  int
	K                int   // TopK family
	Groups           []int // Matryoshka prefix sizes, ascending, the last DSAE
	ApplyBDecToInput bool
	InScale          float32
	OutScale         float32
	// BF16 runs the encoder GEMM on bf16 copies of its inputs (fp32
	// accumulation; the masters and Adam stay float32) and the sparse
	// decoder on a bf16 copy of W_dec.
	BF16              bool
	L1, L0, Bandwidth float64
	AuxKAlpha         float64
	AuxK              int // 0: no AuxK loss
	DeadWindow        int64
	ThresholdMomentum float64
	// MaxRows is the largest batch a step will see.
	MaxRows int
}

// SAEParamNames are the parameters of arch, in the order SAEState holds
// them (and the sae package's Trainable.Params lists them).
func SAEParamNames(arch string) []string {
	n := []string{"W_enc", "b_enc", "W_dec", "b_dec"}
	switch arch {
	case "jumprelu":
		n = append(n, "log_threshold")
	case "batchtopk", "matryoshka":
		n = append(n, "threshold")
	}
	return n
}

// SAEState is what crosses between the host and the device at checkpoints:
// the parameters and both Adam moments (SAEParamNames order), the
// dead-latent counters and whether BatchTopK's threshold has a value.
// JumpReLU's θ is exp(log θ) and is not carried separately.
type SAEState struct {
	Params, M, V [][]float32
	SinceFired   []int64
	ThrInit      bool
}

// SAEStats are one step's sums; the sae package turns them into the loss,
// FVU and the rest exactly as its CPU step does.
type SAEStats struct {
	Rows      int
	SSE       float64 // Σ‖x̂ − y‖², the full reconstruction
	PrefixSSE float64 // Σ over Matryoshka prefixes (= SSE for the others)
	YY, Mean2 float64 // Σ‖y‖² and Σ_i (Σ_r y_ri)²/n, for the FVU
	L0        float64 // active (row, latent) pairs
	AuxSSE    float64 // AuxK's Σ‖ê − e‖²
	Dead      int     // dead latents after this step
	Sparsity  float64 // standard: Σ f·‖d_j‖
}

// dbuf is one device array of the trainer.
type dbuf struct {
	buf *buffer
	n   int // bytes
}

func (d *dbuf) p() uintptr {
	if d == nil || d.buf == nil {
		return 0
	}
	return d.buf.ptr
}

// SAETrainer trains one SAE on the GPU. Its methods may be called from any
// goroutine (they run on the backend's owner), one at a time.
type SAETrainer struct {
	b   *Backend
	cfg SAEConfig
	fn  map[string]uintptr
	mod uintptr

	arch   int // 0 standard, 1 jumprelu, 2 batchtopk, 3 matryoshka, 4 topk
	params []*dbuf
	grads  []*dbuf // nil for a parameter Adam does not update
	m, v   []*dbuf
	enc16  *dbuf
	dec16  *dbuf
	thr    *dbuf // JumpReLU's θ (from log θ); BatchTopK's threshold is params[4]

	x, y, in, in16, yn, pre *dbuf
	idx, val, g, R, E       *dbuf
	aidx, aval, ga, Ea      *dbuf
	counts, starts, fill    *dbuf
	order, since, dead      *dbuf
	f, df, acc, rg          *dbuf
	norms, colS, jumpAcc    *dbuf
	state, hist, minKept    *dbuf
	thrInit, ones, colY, st *dbuf

	all []*dbuf // every allocation, for Close
}

const (
	archStandard = iota
	archJumpReLU
	archBatchTopK
	archMatryoshka
	archTopK
)

// NewSAETrainer allocates the trainer's device memory (parameters, Adam
// moments and the workspace of a MaxRows batch) and compiles its kernels.
// The parameters are zero until Load.
func (b *Backend) NewSAETrainer(cfg SAEConfig) (*SAETrainer, error) {
	t := &SAETrainer{b: b, cfg: cfg, fn: map[string]uintptr{}}
	switch cfg.Arch {
	case "standard":
		t.arch = archStandard
	case "jumprelu":
		t.arch = archJumpReLU
	case "batchtopk":
		t.arch = archBatchTopK
	case "matryoshka":
		t.arch = archMatryoshka
	case "topk":
		t.arch = archTopK
	default:
		return nil, fmt.Errorf("cuda: SAE architecture %q is not one of standard, topk, batchtopk, jumprelu, matryoshka", cfg.Arch)
	}
	n, S, din, d := cfg.MaxRows, cfg.DSAE, cfg.DIn, cfg.DOut
	if n <= 0 || S <= 0 || din <= 0 || d <= 0 {
		return nil, fmt.Errorf("cuda: SAE sizes rows %d, d_in %d, d_sae %d, d_out %d must be positive", n, din, S, d)
	}
	if t.arch != archStandard && t.arch != archJumpReLU && (cfg.K <= 0 || cfg.K > S) {
		return nil, fmt.Errorf("cuda: SAE %s needs 0 < k <= d_sae, got %d", cfg.Arch, cfg.K)
	}
	if t.arch == archMatryoshka && (len(cfg.Groups) == 0 || cfg.Groups[len(cfg.Groups)-1] != S) {
		return nil, fmt.Errorf("cuda: matryoshka groups %v must end at d_sae %d", cfg.Groups, S)
	}
	aux := t.auxK()
	if t.arch == archTopK || aux > 0 {
		kk := max(cfg.K, aux)
		if sh := 4 * (d + 2*kk); sh > 48<<10 {
			return nil, fmt.Errorf("cuda: the SAE's sparse decoder keeps a %d-wide row and %d latents in shared memory (%d bytes, at most 49152)", d, kk, sh)
		}
	}
	var err error
	b.do(func() { err = t.setup() })
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *SAETrainer) auxK() int {
	if t.arch == archTopK || t.arch == archBatchTopK || t.arch == archMatryoshka {
		return min(t.cfg.AuxK, t.cfg.DSAE)
	}
	return 0
}

// setup runs on the owner goroutine.
func (t *SAETrainer) setup() error {
	b := t.b
	arch := b.info.Major*10 + b.info.Minor
	bin, err := compile("sae", saeSource, arch)
	if err != nil {
		return err
	}
	if err := b.d.check("cuModuleLoadData sae", call(b.d.cuModuleLoadData, uintptr(unsafe.Pointer(&t.mod)), uintptr(unsafe.Pointer(&bin[0])))); err != nil {
		return err
	}
	for _, name := range saeKernelNames {
		var f uintptr
		cn := cString(name)
		if r := call(b.d.cuModuleGetFunction, uintptr(unsafe.Pointer(&f)), t.mod, uintptr(unsafe.Pointer(&cn[0]))); r != 0 {
			return fmt.Errorf("cuda: SAE kernel %s missing from the compiled module: %s", name, b.d.errName(r))
		}
		t.fn[name] = f
	}
	c := t.cfg
	n, S, din, d := int64(c.MaxRows), int64(c.DSAE), int64(c.DIn), int64(c.DOut)
	mk := func(what string, bytes int64) *dbuf {
		if bytes <= 0 {
			return nil
		}
		db := &dbuf{n: int(bytes)}
		db.buf = b.alloc(int(bytes), func() string { return "the SAE's " + what })
		t.all = append(t.all, db)
		return db
	}
	sizes := []int64{S * din, S, S * d, d}
	names := SAEParamNames(c.Arch)
	for i, name := range names {
		sz := S
		if i < len(sizes) {
			sz = sizes[i]
		}
		t.params = append(t.params, mk(name, 4*sz))
		if name == "threshold" {
			t.grads, t.m, t.v = append(t.grads, nil), append(t.m, nil), append(t.v, nil)
			continue
		}
		t.grads = append(t.grads, mk("gradient of "+name, 4*sz))
		t.m = append(t.m, mk("Adam first moment of "+name, 4*sz))
		t.v = append(t.v, mk("Adam second moment of "+name, 4*sz))
	}
	switch t.arch {
	case archJumpReLU:
		t.thr = mk("threshold", 4*S)
	case archBatchTopK, archMatryoshka:
		t.thr = t.params[4]
	}
	if c.BF16 {
		t.enc16 = mk("bf16 copy of W_enc", 2*S*din)
		t.in16 = mk("bf16 encoder input", 2*n*din)
		if t.arch == archTopK {
			t.dec16 = mk("bf16 copy of W_dec", 2*S*d)
		}
	}
	t.x = mk("input batch", 4*n*din)
	if c.DIn != c.DOut {
		t.y = mk("target batch", 4*n*d)
	}
	t.in = mk("encoder input", 4*n*din)
	t.yn = mk("normalised targets", 4*n*d)
	t.pre = mk("pre-activations", 4*n*S)
	t.counts = mk("latent counts", 4*S)
	t.starts = mk("latent offsets", 4*(S+1))
	t.fill = mk("latent fill pointers", 4*S)
	t.since = mk("dead-latent counters", 8*S)
	t.dead = mk("dead flags", S)
	t.E = mk("output error", 4*n*d)
	aux := int64(t.auxK())
	k := int64(0)
	if t.arch == archTopK {
		k = int64(c.K)
		t.idx = mk("active latents", 4*n*k)
		t.val = mk("active values", 4*n*k)
		t.g = mk("active gradients", 4*n*k)
	}
	if aux > 0 {
		t.R = mk("residual", 4*n*d)
		t.aidx = mk("AuxK latents", 4*n*aux)
		t.aval = mk("AuxK values", 4*n*aux)
		t.ga = mk("AuxK gradients", 4*n*aux)
		t.Ea = mk("AuxK error", 4*n*d)
	}
	if k+aux > 0 {
		t.order = mk("entries by latent", 4*n*(k+aux))
	}
	if t.arch != archTopK {
		G := int64(1)
		if t.arch == archMatryoshka {
			G = int64(len(c.Groups))
		}
		t.f = mk("latents", 4*n*S)
		t.df = mk("latent gradients", 4*n*S)
		t.acc = mk("reconstruction", 4*n*d)
		t.rg = mk("prefix errors", 4*G*n*d)
		t.norms = mk("decoder norms", 4*S)
		t.colS = mk("latent sums", 8*S)
		t.jumpAcc = mk("threshold gradient sums", 8*S)
		t.state = mk("batch threshold state", 32)
		t.hist = mk("batch threshold histogram", 4*2048)
		t.minKept = mk("smallest kept value", 4)
		t.thrInit = mk("threshold flag", 4)
	}
	t.ones = mk("ones", 4*n)
	t.colY = mk("target column sums", 8*d)
	t.st = mk("step statistics", 8*stN)
	if b.err != nil {
		return b.takeErr()
	}
	t.launch("sae_fill_f32", grid1(int(n)), block256, 0, pArg(t.ones.p()), lArg(int(n)), fArg(1))
	t.memset(t.since)
	t.memset(t.dead)
	if t.thrInit != nil {
		t.memset(t.thrInit)
		t.memset(t.hist)
	}
	for _, m := range append(append([]*dbuf(nil), t.m...), t.v...) {
		t.memset(m)
	}
	return b.takeErr()
}

// Close gives the trainer's device memory back.
func (t *SAETrainer) Close() {
	t.b.do(func() {
		for _, d := range t.all {
			if d.buf != nil {
				t.b.release(d.buf)
			}
		}
		t.all = nil
	})
}

func (t *SAETrainer) launch(name string, grid, block [3]int, shmem int, args ...uint64) {
	b := t.b
	if b.err != nil {
		return
	}
	copy(b.argv[:], args)
	f := t.fn[name]
	r := call(b.d.cuLaunchKernel, f, uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]), uintptr(shmem), b.stream,
		uintptr(unsafe.Pointer(&b.argp[0])), 0)
	b.fail(b.d.check("launch "+name, r))
}

func (t *SAETrainer) memset(d *dbuf) {
	if d == nil || t.b.err != nil {
		return
	}
	t.b.fail(t.b.d.check("cuMemsetD8Async", call(t.b.d.cuMemsetD8Async, d.p(), 0, uintptr(d.n), t.b.stream)))
}

func (t *SAETrainer) memsetN(p uintptr, n int) {
	if n == 0 || t.b.err != nil {
		return
	}
	t.b.fail(t.b.d.check("cuMemsetD8Async", call(t.b.d.cuMemsetD8Async, p, 0, uintptr(n), t.b.stream)))
}

// gemm computes C[M,N] = alpha·op(A)·op(B) + beta·C, row-major, op(A)
// [M,K] (A stored [K,M] when ta), op(B) [K,N] (B stored [N,K] when tb); A
// and B of dtype dt, C float32.
func (t *SAETrainer) gemm(ta, tb bool, M, N, K int, alpha float32, a uintptr, lda int, bm uintptr, ldb int, dt compute.DType, beta float32, c uintptr, ldc int) {
	b := t.b
	if b.err != nil || M == 0 || N == 0 {
		return
	}
	op := func(tr bool) uintptr {
		if tr {
			return 1
		}
		return 0
	}
	// Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
	r := call(b.cb.gemmEx, b.blas, op(tb), op(ta), uintptr(N), uintptr(M), uintptr(K),
		uintptr(unsafe.Pointer(&alpha)), bm, cudaType(dt), uintptr(ldb), a, cudaType(dt), uintptr(lda),
		uintptr(unsafe.Pointer(&beta)), c, 0, uintptr(ldc), computeF32, ^uintptr(0))
	if r != 0 {
		b.fail(fmt.Errorf("cuda: SAE cublasGemmEx %dx%dx%d %s: status %d (%s)", M, N, K, dt, r, b.blasStatus(r)))
	}
}

// Load copies a state to the device (parameters, moments, counters).
func (t *SAETrainer) Load(s *SAEState) error {
	if err := t.checkState(s); err != nil {
		return err
	}
	var err error
	t.b.do(func() {
		b := t.b
		for i, p := range t.params {
			b.upload(p.p(), unsafe.Pointer(&s.Params[i][0]), 4*len(s.Params[i]))
			if t.m[i] != nil {
				b.upload(t.m[i].p(), unsafe.Pointer(&s.M[i][0]), 4*len(s.M[i]))
				b.upload(t.v[i].p(), unsafe.Pointer(&s.V[i][0]), 4*len(s.V[i]))
			}
		}
		b.upload(t.since.p(), unsafe.Pointer(&s.SinceFired[0]), 8*len(s.SinceFired))
		if t.thrInit != nil {
			v := int32(0)
			if s.ThrInit {
				v = 1
			}
			b.upload(t.thrInit.p(), unsafe.Pointer(&v), 4)
		}
		t.refresh()
		err = b.takeErr()
	})
	return err
}

// refresh recomputes what derives from the parameters: bf16 copies and
// JumpReLU's θ.
func (t *SAETrainer) refresh() {
	c := t.cfg
	if t.enc16 != nil {
		n := c.DSAE * c.DIn
		t.launch("sae_cvt16", grid1(n), block256, 0, pArg(t.params[0].p()), pArg(t.enc16.p()), lArg(n))
	}
	if t.dec16 != nil {
		n := c.DSAE * c.DOut
		t.launch("sae_cvt16", grid1(n), block256, 0, pArg(t.params[2].p()), pArg(t.dec16.p()), lArg(n))
	}
	if t.arch == archJumpReLU {
		t.launch("sae_exp", grid1(c.DSAE), block256, 0, pArg(t.params[4].p()), pArg(t.thr.p()), iArg(c.DSAE))
	}
}

// Save copies the device state into s (whose slices must be sized as
// Load's).
func (t *SAETrainer) Save(s *SAEState) error {
	if err := t.checkState(s); err != nil {
		return err
	}
	var err error
	t.b.do(func() {
		b := t.b
		for i, p := range t.params {
			b.download(unsafe.Pointer(&s.Params[i][0]), p.p(), 4*len(s.Params[i]))
			if t.m[i] != nil {
				b.download(unsafe.Pointer(&s.M[i][0]), t.m[i].p(), 4*len(s.M[i]))
				b.download(unsafe.Pointer(&s.V[i][0]), t.v[i].p(), 4*len(s.V[i]))
			}
		}
		b.download(unsafe.Pointer(&s.SinceFired[0]), t.since.p(), 8*len(s.SinceFired))
		if t.thrInit != nil {
			var v int32
			b.download(unsafe.Pointer(&v), t.thrInit.p(), 4)
			s.ThrInit = v != 0
		}
		err = b.takeErr()
	})
	return err
}

func (t *SAETrainer) checkState(s *SAEState) error {
	names := SAEParamNames(t.cfg.Arch)
	if len(s.Params) != len(names) || len(s.M) != len(names) || len(s.V) != len(names) {
		return fmt.Errorf("cuda: SAE state has %d/%d/%d tensors, %s has %d parameters", len(s.Params), len(s.M), len(s.V), t.cfg.Arch, len(names))
	}
	for i, p := range t.params {
		if len(s.Params[i])*4 != p.n || len(s.Params[i]) == 0 {
			return fmt.Errorf("cuda: SAE state: %s has %d values, want %d", names[i], len(s.Params[i]), p.n/4)
		}
		if t.m[i] != nil && (len(s.M[i]) != len(s.Params[i]) || len(s.V[i]) != len(s.Params[i])) {
			return fmt.Errorf("cuda: SAE state: Adam moments of %s have %d/%d values, want %d", names[i], len(s.M[i]), len(s.V[i]), len(s.Params[i]))
		}
	}
	if len(s.SinceFired) != t.cfg.DSAE {
		return fmt.Errorf("cuda: SAE state: %d dead-latent counters, want %d", len(s.SinceFired), t.cfg.DSAE)
	}
	return nil
}

// checkTensor checks that x is a float32 activation tensor of rows×width
// on this backend. Its address is read later, on the owner goroutine
// (devicePtr in Step's do), where every operation queued before has run:
// operations are queued without waiting, so a tensor just produced may
// not be placed yet when Step is called.
func (t *SAETrainer) checkTensor(x compute.Tensor, rows, width int, what string) error {
	ct, ok := x.(*Tensor)
	if !ok {
		return fmt.Errorf("cuda: SAE step: the %s is a %T tensor, not one of this GPU's", what, x)
	}
	if ct.dt != compute.F32 || ct.numel() != rows*width {
		return fmt.Errorf("cuda: SAE step: the %s is %s %v, want float32 of %d×%d", what, ct.dt, ct.shape, rows, width)
	}
	return nil
}

// devicePtr is a checked tensor's device address, on the owner goroutine.
func devicePtr(x compute.Tensor, what string) (uintptr, error) {
	ct := x.(*Tensor)
	if ct.buf.dead || ct.buf.failed {
		return 0, fmt.Errorf("cuda: SAE step: the %s tensor was freed or never allocated", what)
	}
	return ct.ptr(), nil
}

// SetThresholdMomentum sets the weight m of the old BatchTopK threshold
// for the steps that follow (th = m·th + (1 − m)·minKept): the sae
// package varies it from step to step (an EMA, then a running mean). Call
// it between steps.
func (t *SAETrainer) SetThresholdMomentum(m float64) { t.cfg.ThresholdMomentum = m }

// Step computes a batch's loss and every gradient (the state of the dead
// counters and BatchTopK's threshold moves too, as on the CPU). The batch
// is x (rows×DIn) and, for a transcoder, y (rows×DOut): host slices, or
// device tensors dx/dy of this backend (then x/y are nil) that are read in
// place.
func (t *SAETrainer) Step(x, y []float32, dx, dy compute.Tensor, rows int) (SAEStats, error) {
	c := t.cfg
	if rows <= 0 || rows > c.MaxRows {
		return SAEStats{}, fmt.Errorf("cuda: SAE step of %d rows (the trainer was sized for %d)", rows, c.MaxRows)
	}
	transcoder := c.DIn != c.DOut
	var xp, yp uintptr
	var err error
	switch {
	case dx != nil:
		if err = t.checkTensor(dx, rows, c.DIn, "input batch"); err != nil {
			return SAEStats{}, err
		}
		if dy != nil {
			if err = t.checkTensor(dy, rows, c.DOut, "target batch"); err != nil {
				return SAEStats{}, err
			}
		}
	case len(x) != rows*c.DIn || (y != nil && len(y) != rows*c.DOut):
		return SAEStats{}, fmt.Errorf("cuda: SAE step: %d/%d values for %d rows of %d/%d", len(x), len(y), rows, c.DIn, c.DOut)
	}
	if transcoder && dy == nil && y == nil {
		return SAEStats{}, fmt.Errorf("cuda: SAE step: a transcoder (d_in %d, d_out %d) needs targets", c.DIn, c.DOut)
	}
	var out SAEStats
	t.b.do(func() {
		b := t.b
		if dx != nil {
			if xp, err = devicePtr(dx, "input batch"); err == nil && dy != nil {
				yp, err = devicePtr(dy, "target batch")
			}
			if err != nil {
				return
			}
		}
		if dx == nil {
			xp = t.x.p()
			b.upload(xp, unsafe.Pointer(&x[0]), 4*len(x))
			if y != nil {
				yp = t.y.p()
				b.upload(yp, unsafe.Pointer(&y[0]), 4*len(y))
			}
		}
		t.step(xp, yp, rows)
		var st [stN]float64
		b.download(unsafe.Pointer(&st[0]), t.st.p(), 8*stN)
		if err = b.takeErr(); err != nil {
			return
		}
		out = SAEStats{Rows: rows, SSE: st[stSSE], PrefixSSE: st[stPSSE], YY: st[stYY], Mean2: st[stMean2],
			L0: st[stL0], AuxSSE: st[stAuxSSE], Dead: int(st[stDead]), Sparsity: st[stSparse]}
		if t.arch == archTopK {
			out.PrefixSSE = out.SSE // one prefix: the whole dictionary
		}
	})
	return out, err
}

// step queues one step's work (owner goroutine).
func (t *SAETrainer) step(xp, yp uintptr, n int) {
	c := t.cfg
	S, din, d := c.DSAE, c.DIn, c.DOut
	t.memset(t.st)
	t.memset(t.colY)
	applyB := 0
	if c.ApplyBDecToInput {
		applyB = 1
	}
	bdec := t.params[3].p()
	t.launch("sae_prep", grid1(n*max(din, d)), block256, 0, pArg(xp), pArg(yp), pArg(bdec), pArg(t.in.p()), pArg(t.in16.p()),
		pArg(t.yn.p()), lArg(n), iArg(din), iArg(d), fArg(c.InScale), fArg(c.OutScale), iArg(applyB), pArg(t.st.p()))
	chunks := min(64, max(1, n/64))
	t.launch("sae_colsum", [3]int{(d + 255) / 256, chunks, 1}, block256, 0, pArg(t.yn.p()), lArg(n), iArg(d), pArg(t.colY.p()))
	t.launch("sae_mean2", [3]int{1, 1, 1}, block256, 0, pArg(t.colY.p()), iArg(d), lArg(n), pArg(t.st.p()))
	// pre = in·W_encᵀ (+ b_enc: added here for the dense path; TopK's
	// selection adds it as it reads, which saves writing and re-reading the
	// [rows, latents] matrix once)
	beta := float32(0)
	if t.arch != archTopK {
		t.launch("sae_bias_rows", grid1(n*S), block256, 0, pArg(t.pre.p()), pArg(t.params[1].p()), lArg(n), iArg(S))
		beta = 1
	}
	if c.BF16 {
		t.gemm(false, true, n, S, din, 1, t.in16.p(), din, t.enc16.p(), din, compute.BF16, beta, t.pre.p(), S)
	} else {
		t.gemm(false, true, n, S, din, 1, t.in.p(), din, t.params[0].p(), din, compute.F32, beta, t.pre.p(), S)
	}
	if t.arch == archTopK {
		t.sparseStep(n)
	} else {
		t.denseStep(n)
	}
	// b_dec: Σ_rows E_0, less W_encᵀ·g_benc when b_dec is subtracted from the input
	gB := t.grads[3].p()
	t.gemm(false, false, 1, d, n, 1, t.ones.p(), n, t.E.p(), d, compute.F32, 0, gB, d)
	if c.ApplyBDecToInput {
		t.gemm(false, false, 1, din, S, -1, t.grads[1].p(), S, t.params[0].p(), din, compute.F32, 1, gB, din)
	}
}

// grid for one-block-per-row kernels.
func rowsGrid(n int) [3]int { return [3]int{max(1, min(n, 65535)), 1, 1} }

// sparseStep is TopK's step after the encoder GEMM.
func (t *SAETrainer) sparseStep(n int) {
	c := t.cfg
	S, din, d, k := c.DSAE, c.DIn, c.DOut, c.K
	st := t.st.p()
	t.launch("sae_topk", rowsGrid(n), [3]int{1024, 1, 1}, 0, pArg(t.pre.p()), pArg(t.params[1].p()), lArg(n), iArg(S), iArg(k), 0, 0,
		pArg(t.idx.p()), pArg(t.val.p()), pArg(st+8*stL0))
	W, bf := t.params[2].p(), 0
	if t.dec16 != nil {
		W, bf = t.dec16.p(), 1
	}
	scale := float32(2 / float64(n))
	aux := t.auxK()
	var R uintptr
	if aux > 0 {
		R = t.R.p()
	}
	t.launch("sae_decode", rowsGrid(n), block256, 4*(d+2*k), pArg(t.idx.p()), pArg(t.val.p()), iArg(k), pArg(W), iArg(bf),
		pArg(t.params[3].p()), 0, pArg(t.yn.p()), lArg(n), iArg(d), fArg(scale), 0, 0, 0,
		pArg(R), pArg(t.E.p()), pArg(t.g.p()), pArg(st), iArg(stSSE))
	// the dead counters see the main selection only (as the CPU's)
	t.memset(t.counts)
	t.launch("sae_count", grid1(n*k), block256, 0, pArg(t.idx.p()), lArg(n*k), pArg(t.counts.p()), 0)
	t.launch("sae_dead", grid1(S), block256, 0, pArg(t.counts.p()), pArg(t.since.p()), iArg(S), lArg(n), lArg(int(c.DeadWindow)),
		pArg(t.dead.p()), pArg(st))
	if aux > 0 {
		t.auxSelect(n, W, bf)
		t.launch("sae_count", grid1(n*aux), block256, 0, pArg(t.aidx.p()), lArg(n*aux), pArg(t.counts.p()), pArg(st))
	}
	t.launch("sae_scan", [3]int{1, 1, 1}, [3]int{1024, 1, 1}, 0, pArg(t.counts.p()), iArg(S), pArg(t.starts.p()), pArg(t.fill.p()))
	t.launch("sae_fill", grid1(n*k), block256, 0, pArg(t.idx.p()), lArg(n*k), lArg(0), pArg(t.fill.p()), pArg(t.order.p()), 0)
	if aux > 0 {
		t.launch("sae_fill", grid1(n*aux), block256, 0, pArg(t.aidx.p()), lArg(n*aux), lArg(n*k), pArg(t.fill.p()), pArg(t.order.p()), pArg(st))
	}
	in, inbf := t.in.p(), 0
	if t.in16 != nil {
		in, inbf = t.in16.p(), 1
	}
	kaArg := max(aux, 1)
	t.launch("sae_accum", rowsGrid(S), block256, 0, pArg(t.starts.p()), pArg(t.order.p()), lArg(n*k), iArg(k), iArg(kaArg),
		pArg(t.val.p()), pArg(t.g.p()), pArg(t.aval.p()), pArg(t.ga.p()), pArg(t.E.p()), pArg(t.Ea.p()), pArg(in), iArg(inbf),
		iArg(d), iArg(din), pArg(t.params[2].p()), iArg(1), iArg(0), pArg(t.grads[2].p()), pArg(t.grads[0].p()), pArg(t.grads[1].p()), iArg(S))
}

// auxSelect is AuxK's selection and decode (after the dead counters are
// updated): each row's AuxK largest pre-activations among dead latents
// reconstruct the residual. Its kernels do nothing when no latent is dead.
func (t *SAETrainer) auxSelect(n int, W uintptr, bf int) {
	c := t.cfg
	S, d := c.DSAE, c.DOut
	aux := t.auxK()
	st := t.st.p()
	var bias uintptr // the dense path's pre-activations hold b_enc already
	if t.arch == archTopK {
		bias = t.params[1].p()
	}
	t.launch("sae_topk", rowsGrid(n), [3]int{1024, 1, 1}, 0, pArg(t.pre.p()), pArg(bias), lArg(n), iArg(S), iArg(aux), pArg(t.dead.p()), pArg(st),
		pArg(t.aidx.p()), pArg(t.aval.p()), 0)
	scale := float32(2 / float64(n))
	t.launch("sae_decode", rowsGrid(n), block256, 4*(d+2*aux), pArg(t.aidx.p()), pArg(t.aval.p()), iArg(aux), pArg(W), iArg(bf),
		0, pArg(t.R.p()), 0, lArg(n), iArg(d), fArg(scale), pArg(st), iArg(c.AuxK), fArg(float32(c.AuxKAlpha)),
		0, pArg(t.Ea.p()), pArg(t.ga.p()), pArg(st), iArg(stAuxSSE))
}

// denseStep is the step of standard, JumpReLU, BatchTopK and Matryoshka
// after the encoder GEMM.
func (t *SAETrainer) denseStep(n int) {
	c := t.cfg
	S, din, d := c.DSAE, c.DIn, c.DOut
	st := t.st.p()
	tot := n * S
	pre, f, df := t.pre.p(), t.f.p(), t.df.p()
	W := t.params[2].p()
	// 1. activations
	switch t.arch {
	case archStandard:
		t.launch("sae_act", grid1(tot), block256, 0, pArg(pre), lArg(n), iArg(S), iArg(0), 0, 0, pArg(f), 0, pArg(st))
	case archJumpReLU:
		t.launch("sae_act", grid1(tot), block256, 0, pArg(pre), lArg(n), iArg(S), iArg(1), pArg(t.thr.p()), 0, pArg(f), 0, pArg(st))
	default:
		// the (K·n+1)-th largest positive pre-activation of the batch
		state := [8]uint32{0, 0, uint32(c.K*n + 1)}
		t.b.upload(t.state.p(), unsafe.Pointer(&state[0]), 32)
		ff := uint32(0xffffffff)
		t.b.upload(t.minKept.p(), unsafe.Pointer(&ff), 4)
		for pass := 0; pass < 3; pass++ {
			t.launch("sae_ghist", grid1(tot), block256, 0, pArg(pre), lArg(tot), iArg(pass), pArg(t.state.p()), pArg(t.hist.p()))
			t.launch("sae_gfind", [3]int{1, 1, 1}, [3]int{1024, 1, 1}, 0, pArg(t.hist.p()), iArg(pass), pArg(t.state.p()))
		}
		t.launch("sae_act", grid1(tot), block256, 0, pArg(pre), lArg(n), iArg(S), iArg(2), 0, pArg(t.state.p()+16), pArg(f),
			pArg(t.minKept.p()), pArg(st))
		t.launch("sae_batch_thr", [3]int{1, 1, 1}, block256, 0, pArg(t.minKept.p()), pArg(st), pArg(t.thr.p()), iArg(S),
			pArg(t.thrInit.p()), fArg(float32(c.ThresholdMomentum)))
	}
	// 2. decode by prefix: acc = b_dec + Σ_g f_g·W_g, r_g = acc − y
	groups := []int{S}
	if t.arch == archMatryoshka {
		groups = c.Groups
	}
	G := len(groups)
	nd := n * d
	t.launch("sae_bias_rows", grid1(nd), block256, 0, pArg(t.acc.p()), pArg(t.params[3].p()), lArg(n), iArg(d))
	lo := 0
	for g, hi := range groups {
		t.gemm(false, false, n, d, hi-lo, 1, f+uintptr(4*lo), S, W+uintptr(4*lo*d), d, compute.F32, 1, t.acc.p(), d)
		last := 0
		if g == G-1 {
			last = 1
		}
		t.launch("sae_resid", grid1(nd), block256, 0, pArg(t.acc.p()), pArg(t.yn.p()), pArg(t.rg.p()+uintptr(4*g*nd)), lArg(nd), iArg(last), pArg(st))
		lo = hi
	}
	if aux := t.auxK(); aux > 0 {
		// AuxK's residual is the full reconstruction's: r_{G−1}
		t.b.copyDtoD(t.R.p(), t.rg.p()+uintptr(4*(G-1)*nd), 4*nd)
	}
	scale := float32(2 / float64(n))
	t.launch("sae_suffix", grid1(nd), block256, 0, pArg(t.rg.p()), iArg(G), lArg(nd), fArg(scale))
	// E_0 is what b_dec's gradient sums
	t.b.copyDtoD(t.E.p(), t.rg.p(), 4*nd)
	// 3. df_g = E_g·W_gᵀ, gDec_g = f_gᵀ·E_g
	gDec := t.grads[2].p()
	lo = 0
	for g, hi := range groups {
		Eg := t.rg.p() + uintptr(4*g*nd)
		t.gemm(false, true, n, hi-lo, d, 1, Eg, d, W+uintptr(4*lo*d), d, compute.F32, 0, df+uintptr(4*lo), S)
		t.gemm(true, false, hi-lo, d, n, 1, f+uintptr(4*lo), S, Eg, d, compute.F32, 0, gDec+uintptr(4*lo*d), d)
		lo = hi
	}
	// 4. the sparsity terms
	switch t.arch {
	case archStandard:
		lam := float32(c.L1 / float64(n))
		t.launch("sae_norms", rowsGrid(S), block256, 0, pArg(W), iArg(S), iArg(d), pArg(t.norms.p()))
		t.launch("sae_l1", grid1(tot), block256, 0, pArg(f), pArg(df), pArg(t.norms.p()), lArg(n), iArg(S), fArg(lam), pArg(st))
		t.memset(t.colS)
		t.launch("sae_colsum", [3]int{(S + 255) / 256, min(64, max(1, n/64)), 1}, block256, 0, pArg(f), lArg(n), iArg(S), pArg(t.colS.p()))
		t.launch("sae_l1_dec", grid1(S*d), block256, 0, pArg(gDec), pArg(W), pArg(t.colS.p()), pArg(t.norms.p()), iArg(S), iArg(d), fArg(lam))
	case archJumpReLU:
		eps := float32(c.Bandwidth)
		lam := float32(c.L0 / float64(n))
		t.memset(t.jumpAcc)
		t.launch("sae_jump", [3]int{(S + 255) / 256, min(64, max(1, n/64)), 1}, block256, 0, pArg(pre), pArg(df), pArg(t.thr.p()),
			lArg(n), iArg(S), fArg(eps), fArg(lam), pArg(t.jumpAcc.p()))
		t.launch("sae_jump_fin", grid1(S), block256, 0, pArg(t.jumpAcc.p()), pArg(t.thr.p()), pArg(t.grads[4].p()), iArg(S))
	}
	t.launch("sae_mask", grid1(tot), block256, 0, pArg(df), pArg(f), lArg(tot))
	// 5. encoder gradients: gEnc = dfᵀ·in, gBEnc = Σ_rows df
	t.gemm(true, false, S, din, n, 1, df, S, t.in.p(), din, compute.F32, 0, t.grads[0].p(), din)
	t.gemm(false, false, 1, S, n, 1, t.ones.p(), n, df, S, compute.F32, 0, t.grads[1].p(), S)
	// 6. dead counters, then AuxK over the dead latents (TopK family)
	t.memset(t.counts)
	t.launch("sae_colany", [3]int{(S + 255) / 256, min(64, max(1, n/64)), 1}, block256, 0, pArg(f), lArg(n), iArg(S), pArg(t.counts.p()))
	t.launch("sae_dead", grid1(S), block256, 0, pArg(t.counts.p()), pArg(t.since.p()), iArg(S), lArg(n), lArg(int(c.DeadWindow)),
		pArg(t.dead.p()), pArg(st))
	if aux := t.auxK(); aux > 0 {
		t.auxSelect(n, W, 0)
		t.memset(t.counts)
		t.launch("sae_count", grid1(n*aux), block256, 0, pArg(t.aidx.p()), lArg(n*aux), pArg(t.counts.p()), pArg(st))
		t.launch("sae_scan", [3]int{1, 1, 1}, [3]int{1024, 1, 1}, 0, pArg(t.counts.p()), iArg(S), pArg(t.starts.p()), pArg(t.fill.p()))
		t.launch("sae_fill", grid1(n*aux), block256, 0, pArg(t.aidx.p()), lArg(n*aux), lArg(0), pArg(t.fill.p()), pArg(t.order.p()), pArg(st))
		// every entry is an AuxK one: nmain 0
		t.launch("sae_accum", rowsGrid(S), block256, 0, pArg(t.starts.p()), pArg(t.order.p()), lArg(0), iArg(1), iArg(aux),
			0, 0, pArg(t.aval.p()), pArg(t.ga.p()), 0, pArg(t.Ea.p()), pArg(t.in.p()), iArg(0),
			iArg(d), iArg(din), pArg(W), iArg(0), iArg(1), pArg(gDec), pArg(t.grads[0].p()), pArg(t.grads[1].p()), iArg(S))
	}
	if t.arch != archStandard {
		t.launch("sae_project", rowsGrid(S), block256, 0, pArg(gDec), pArg(W), iArg(S), iArg(d))
	}
}

// Update is the optimizer step: Adam (beta1, beta2, eps) with learning rate
// lr, adamT the update's number from 1 (for the bias correction), on every
// parameter but BatchTopK's threshold; unit-norm decoder rows renormalised
// (all but the standard SAE); bf16 copies and JumpReLU's θ refreshed.
func (t *SAETrainer) Update(lr float64, adamT int, beta1, beta2, epsilon float64) error {
	c := t.cfg
	c1 := 1 - math.Pow(beta1, float64(adamT))
	c2 := 1 - math.Pow(beta2, float64(adamT))
	step, inv2 := float32(lr/c1), float32(1/c2)
	b1, b2, eps := float32(beta1), float32(beta2), float32(epsilon)
	var err error
	t.b.do(func() {
		for i, p := range t.params {
			if t.grads[i] == nil {
				continue
			}
			n := p.n / 4
			var w16 uintptr
			if i == 0 {
				w16 = t.enc16.p()
			}
			if i == 2 {
				w16 = t.dec16.p()
				if t.arch != archStandard {
					t.launch("sae_adam_unit", rowsGrid(c.DSAE), block256, 0, pArg(p.p()), pArg(t.grads[i].p()), pArg(t.m[i].p()), pArg(t.v[i].p()),
						iArg(c.DSAE), iArg(c.DOut), fArg(step), fArg(b1), fArg(b2), fArg(inv2), fArg(eps), pArg(w16))
					continue
				}
			}
			t.launch("sae_adam", grid1(n), block256, 0, pArg(p.p()), pArg(t.grads[i].p()), pArg(t.m[i].p()), pArg(t.v[i].p()),
				lArg(n), fArg(step), fArg(b1), fArg(b2), fArg(inv2), fArg(eps), pArg(w16))
		}
		if t.arch == archJumpReLU {
			t.launch("sae_exp", grid1(c.DSAE), block256, 0, pArg(t.params[4].p()), pArg(t.thr.p()), iArg(c.DSAE))
		}
		// No synchronisation: a failure is sticky and the next Step reports it.
		err = t.b.err
	})
	return err
}

// Timer measures GPU time on the backend's stream between two points (CUDA
// events), for benchmarks.
type Timer struct {
	b          *Backend
	start, end uintptr
}

// NewTimer records a start event now (after the work queued so far).
func (b *Backend) NewTimer() (*Timer, error) {
	tm := &Timer{b: b}
	var err error
	b.do(func() {
		for _, e := range []*uintptr{&tm.start, &tm.end} {
			if err = b.d.check("cuEventCreate", call(b.d.cuEventCreate, uintptr(unsafe.Pointer(e)), 0)); err != nil {
				return
			}
		}
		err = b.d.check("cuEventRecord", call(b.d.cuEventRecord, tm.start, b.stream))
	})
	return tm, err
}

// Stop records the end event, waits for it and gives the seconds between.
func (tm *Timer) Stop() (float64, error) {
	b := tm.b
	var ms float32
	var err error
	b.do(func() {
		if err = b.d.check("cuEventRecord", call(b.d.cuEventRecord, tm.end, b.stream)); err != nil {
			return
		}
		if err = b.d.check("cuEventSynchronize", call(b.d.cuEventSynchronize, tm.end)); err != nil {
			return
		}
		err = b.d.check("cuEventElapsedTime", call(b.d.cuEventTime, uintptr(unsafe.Pointer(&ms)), tm.start, tm.end))
	})
	return float64(ms) / 1000, err
}

// Gradients downloads the last step's gradients, in SAEParamNames order
// (nil for BatchTopK's threshold, which has none). For tests.
func (t *SAETrainer) Gradients() ([][]float32, error) {
	out := make([][]float32, len(t.params))
	var err error
	t.b.do(func() {
		for i, g := range t.grads {
			if g == nil {
				continue
			}
			out[i] = make([]float32, g.n/4)
			t.b.download(unsafe.Pointer(&out[i][0]), g.p(), g.n)
		}
		err = t.b.takeErr()
	})
	return out, err
}
