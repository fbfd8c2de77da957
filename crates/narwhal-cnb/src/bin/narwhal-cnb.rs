//! The CNB alone: link `bin/detect` and `bin/build` to this binary.

fn main() {
    narwhal_cnb::run();
}
