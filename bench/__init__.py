"""The benchmark that ships, `fstcn bench`: the service and its fast paths measured side by side on this
machine (`runner`), the models it compares (`models`), its input videos (`media`), timing and FLOP helpers
(`core`), the HTTP load generator (`loadgen`), and one report built from the results (`tables`, laid out by
`report` for the console and `markdown` for bench/RESULTS.md); `gpu_bench` with bench/gpu.sh measures a
GPU machine. The product never imports it (only the CLI's `bench` command does); one-off studies live in
experiments/ and the raw results of record in bench/results/, neither of them packaged."""
