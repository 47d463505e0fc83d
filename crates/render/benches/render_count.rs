//! A fixed number of renders of one benchmark case, for instruction counting under
//! `valgrind --tool=callgrind` (repeatable where wall-clock time on a shared machine is not):
//! `render_count <case> <iterations>`; `render_count --list` prints the case names.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on broken fixtures

mod cases;

use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--list") {
        for case in cases::all() {
            println!("{}", case.name);
        }
        return;
    }
    let (Some(name), Some(count)) = (args.first(), args.get(1)) else {
        eprintln!("usage: render_count <case> <iterations> | --list");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("iterations is a number");
    let case = cases::named(name).unwrap_or_else(|| panic!("no case `{name}`"));
    let mut objects = 0;
    for _ in 0..count {
        let rendered = rlaunch_render::render(
            black_box(&case.spec),
            black_box(case.queue.as_ref()),
            black_box(&case.ctx),
        )
        .expect("renders");
        objects += rendered.objects.len();
    }
    println!("{name}: {count} renders, {objects} objects");
}
