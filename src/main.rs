#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    herald::app::cli::main()
}
