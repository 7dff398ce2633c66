#!/bin/busybox sh
# /init of the self-test initramfs: load the module (its init runs the table and prints to
# the serial console), say how the load went, power off.
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "hugesept-initramfs: $(/bin/busybox uname -r), loading hugesept_selftest.ko"
if /bin/busybox insmod /hugesept_selftest.ko; then
	echo "hugesept-initramfs: insmod ok"
else
	echo "hugesept-initramfs: insmod failed"
fi
/bin/busybox poweroff -f
