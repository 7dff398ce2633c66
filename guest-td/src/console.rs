//! Text output on the COM1 serial port (I/O port 0x3F8), one byte per port write, a line at a
//! time under a spin lock so the lines of several vCPUs do not interleave.
//!
//! The UART is not programmed: VMMs (QEMU, the hugesept VMM) accept bytes written to the data
//! register without setup. Every byte is an exit (a TDG.VP.VMCALL inside a TD), so the payload
//! prints a few lines per run; its counts go to the VMM in the report instead.

use core::fmt;

use spin::Mutex;

use crate::platform::{self, Port};

/// The serial console; `write!`/`writeln!` on it print text.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            platform::outb(Port::Com1, byte);
        }
        Ok(())
    }
}

/// Held while one line is written.
static LINE: Mutex<()> = Mutex::new(());

/// Prints one formatted line.
pub fn print_line(args: fmt::Arguments<'_>) {
    use fmt::Write;
    let _line = LINE.lock();
    // Console::write_str never fails.
    let _ = Console.write_fmt(args);
    let _ = Console.write_str("\n");
}

/// Prints a formatted line on the serial console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print_line(format_args!($($arg)*))
    };
}
