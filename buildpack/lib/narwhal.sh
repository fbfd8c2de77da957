# Finds the narwhal binary for the buildpack scripts and sets $NARWHAL.
# In order: $NARWHAL_BIN (tests point it at the binary just built); the
# statically linked binary packaged into the buildpack (bin/narwhal-linux-x86_64);
# a copy downloaded earlier into the build cache; or a download from the
# NARWHAL_BINARY_URL config var, checked against NARWHAL_BINARY_SHA256 when set.
narwhal_find() {
  local bp_dir=$1 cache_dir=${2:-} env_dir=${3:-}
  if [ -n "${NARWHAL_BIN:-}" ] && [ -x "$NARWHAL_BIN" ]; then
    NARWHAL=$NARWHAL_BIN; return 0
  fi
  if [ -x "$bp_dir/bin/narwhal-linux-x86_64" ]; then
    NARWHAL=$bp_dir/bin/narwhal-linux-x86_64; return 0
  fi
  local url="" sum=""
  if [ -n "$env_dir" ] && [ -f "$env_dir/NARWHAL_BINARY_URL" ]; then url=$(cat "$env_dir/NARWHAL_BINARY_URL"); fi
  if [ -n "$env_dir" ] && [ -f "$env_dir/NARWHAL_BINARY_SHA256" ]; then sum=$(cat "$env_dir/NARWHAL_BINARY_SHA256"); fi
  if [ -n "$cache_dir" ] && [ -n "$url" ]; then
    local dest="$cache_dir/narwhal/bin/narwhal"
    if [ ! -x "$dest" ] || [ "$(cat "$dest.url" 2>/dev/null)" != "$url" ]; then
      mkdir -p "$(dirname "$dest")"
      echo "-----> Downloading narwhal from $url"
      curl -fsSL --retry 3 -o "$dest.tmp" "$url" || { echo " !     cannot download narwhal from $url: check NARWHAL_BINARY_URL" >&2; return 1; }
      if [ -n "$sum" ] && ! echo "$sum  $dest.tmp" | sha256sum -c --status; then
        rm -f "$dest.tmp"; echo " !     the narwhal binary at $url does not match NARWHAL_BINARY_SHA256" >&2; return 1
      fi
      chmod 755 "$dest.tmp" && mv "$dest.tmp" "$dest" && echo "$url" > "$dest.url"
    fi
    NARWHAL=$dest; return 0
  fi
  echo " !     no narwhal binary: package one into the buildpack (scripts/package-buildpack) or set NARWHAL_BINARY_URL" >&2
  return 1
}
