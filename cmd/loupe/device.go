package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
)

// deviceFlags are --device and --weight-dtype (not --dtype: loupe trace
// uses that for the activations it stores), shared by every command that loads
// a model.
type deviceFlags struct {
	device string
	dtype  string
	stderr io.Writer // where auto says which device it chose
}

func (f *deviceFlags) register(fs *flag.FlagSet) {
	f.stderr = fs.Output() // newFlags points it at the command's stderr
	fs.StringVar(&f.device, "device", "auto", "where the model runs: auto (a GPU when one works, else the CPU), cpu, cuda or cuda:N")
	fs.StringVar(&f.dtype, "weight-dtype", "bf16", "the dtype the GPU keeps weights in: bf16, f16 or f32 (norms, softmax, reductions and caches stay f32; the CPU always computes in f32)")
}

// backend opens the device the flags name. auto falls back to the CPU with
// one line on stderr saying why; cuda without a usable GPU is an error.
func (f *deviceFlags) backend() (compute.Backend, error) {
	dt, ok := compute.ParseDType(f.dtype)
	if !ok {
		return nil, fmt.Errorf("%w: --weight-dtype %q: want bf16, f16 or f32", errUsage, f.dtype)
	}
	dev := strings.ToLower(f.device)
	switch {
	case dev == "cpu":
		return compute.NewCPU(), nil
	case dev == "auto":
		b, err := cuda.New(cuda.Options{WeightDType: dt})
		if err != nil {
			fmt.Fprintf(f.stderr, "loupe: no usable GPU (%s); running on the CPU\n", shortDeviceError(err))
			return compute.NewCPU(), nil
		}
		fmt.Fprintf(f.stderr, "loupe: running on %s\n", b.Name())
		return b, nil
	case dev == "cuda" || strings.HasPrefix(dev, "cuda:"):
		n := 0
		if rest, ok := strings.CutPrefix(dev, "cuda:"); ok {
			var err error
			if n, err = strconv.Atoi(rest); err != nil || n < 0 {
				return nil, fmt.Errorf("%w: --device %q: want cuda:N with N a GPU index", errUsage, f.device)
			}
		}
		b, err := cuda.New(cuda.Options{Device: n, WeightDType: dt})
		if err != nil {
			return nil, fmt.Errorf("--device %s: %w", f.device, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: --device %q: want auto, cpu, cuda or cuda:N", errUsage, f.device)
}

// shortDeviceError is the gist of why no GPU opened, for auto's one line
// (--device cuda gives the whole message, every folder looked in included).
func shortDeviceError(err error) string {
	var me *cuda.MissingError
	if errors.As(err, &me) {
		if me.Detail != "" {
			return fmt.Sprintf("cannot open %s: %s", me.What, me.Detail)
		}
		return fmt.Sprintf("%s not found", strings.Join(me.Names[:1], ""))
	}
	return strings.TrimPrefix(err.Error(), "cuda: ")
}

func cmdDevices(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "devices", example: "loupe devices",
		writes: "one line each for the driver, NVRTC and cuBLAS, then a table of the GPUs (or why there is none) on stdout"})
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	devs, err := cuda.Devices()
	if err != nil {
		fmt.Fprintf(env.stdout, "no GPU: %v\n", err)
		return nil
	}
	d0 := devs[0]
	fmt.Fprintf(env.stdout, "driver: CUDA %s (%s)\n", cudaVersion(d0.DriverVersion), d0.DriverLibrary)
	if d0.NVRTCVersion != "" {
		fmt.Fprintf(env.stdout, "NVRTC: %s (%s)\n", d0.NVRTCVersion, d0.NVRTCLibrary)
	}
	if d0.CUBLASVersion != 0 {
		v := d0.CUBLASVersion
		fmt.Fprintf(env.stdout, "cuBLAS: %d.%d.%d (%s)\n", v/10000, v/100%100, v%100, d0.CUBLASLibrary)
	}
	for _, p := range d0.LibraryProblems {
		fmt.Fprintf(env.stdout, "problem: %s\n", p)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "device\tname\tcompute\tSMs\tmemory free / total\tusable")
	for _, d := range devs {
		usable := "yes"
		if err := d.Usable(); err != nil {
			usable = "no: " + err.Error()
		}
		fmt.Fprintf(tw, "cuda:%d\t%s\t%d.%d\t%d\t%.1f / %.1f GiB\t%s\n", d.Index, d.Name, d.Major, d.Minor, d.Multiprocessors,
			float64(d.FreeBytes)/(1<<30), float64(d.TotalBytes)/(1<<30), usable)
	}
	return tw.Flush()
}

func cudaVersion(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }
