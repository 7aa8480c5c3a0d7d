mod net;

fn main() {}
