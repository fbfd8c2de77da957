# The closure `scripts/bench-fetch` and `scripts/bench-push` move: about 1 GB
# in some 55,000 files, copied from the host's /usr into five store paths, the
# root referring to the others.
# `--argstr variant X` changes one dependency (bench-include) and so the root: scripts/bench-image
# measures what a re-push after a one-path change uploads. Without it the paths are the usual ones.
{ variant ? "" }:
let
  mk = import ../crates/narwhal-testkit/fixtures/mk.nix;
  copy = name: src: mk name "mkdir -p $out && cp -a ${src}/. $out/ && chmod -R u+w $out";
  share = copy "bench-share" "/usr/share";
  include = if variant == "" then copy "bench-include" "/usr/include"
    else mk "bench-include" "mkdir -p $out && cp -a /usr/include/. $out/ && chmod -R u+w $out && echo ${variant} > $out/variant";
  python = copy "bench-python" "/usr/lib/python3.11";
  gcc = copy "bench-gcc" "/usr/lib/gcc";
in mk "bench-root" ''
  mkdir -p $out
  printf '%s\n' ${share} ${include} ${python} ${gcc} > $out/parts
''
