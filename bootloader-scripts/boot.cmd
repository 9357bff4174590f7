# updater boot script for U-Boot (hush; tested on 2023.01 as in Debian's u-boot-qemu).
# The boot contract it implements is in bootloader-scripts/README.md.
# Compile: mkimage -A arm64 -T script -C none -n "updater boot" -d boot.cmd boot.scr  (-A arm: 32-bit)
#
# Run by distro_bootcmd, which sets devtype, devnum and distro_bootpart (the partition holding
# this script: the sysroot). Scratch state lives in hush local variables (s_*), never in the
# environment, so saveenv stores only the contract variables.

echo "updater: boot script, contract 1"
s_part="virtio 0:1"
if test -n "${devtype}" && test -n "${devnum}" && test -n "${distro_bootpart}"; then
  s_part="${devtype} ${devnum}:${distro_bootpart}"
fi

# The environment was lost (bad CRC, so U-Boot's defaults) or never written: recover the
# known-good deployment from the text file deploy keeps beside this script (never saved here).
if test -z "${upd_current}" && test -z "${upd_trial}"; then
  echo "updater: upd_current is not set (environment lost?); reading /boot/updater-env.txt"
  if load ${s_part} ${scriptaddr} /boot/updater-env.txt; then
    env import -t ${scriptaddr} ${filesize} upd_current upd_bootargs upd_kernel upd_initrd upd_fdt upd_limit
  else
    echo "updater: /boot/updater-env.txt is missing too: nothing to boot"
  fi
fi

s_kernel=boot/vmlinuz
if test -n "${upd_kernel}"; then s_kernel="${upd_kernel}"; fi
s_initrd=boot/initrd.img
if test -n "${upd_initrd}"; then s_initrd="${upd_initrd}"; fi

# upd_limit: one digit 1-9 (else 3). upd_count: one digit 0-9 (empty = 0); anything else
# counts as exhausted, so a damaged counter ends the trial instead of looping. setexpr works
# in hex: single digits below the limit read the same in hex and decimal.
s_limit=3
for d in 1 2 3 4 5 6 7 8 9; do if test "${upd_limit}" = "${d}"; then s_limit=${d}; fi; done
s_count=x
if test -z "${upd_count}"; then s_count=0; fi
for d in 0 1 2 3 4 5 6 7 8 9; do if test "${upd_count}" = "${d}"; then s_count=${d}; fi; done

# Candidates in order; "-" marks an empty slot (hush keeps no empty local variables).
s_first=-
s_second=-
s_third=-
if test -n "${upd_current}"; then s_first="${upd_current}"; fi
if test -n "${upd_trial}"; then s_second="${upd_trial}"; fi
if test -n "${upd_failed}"; then s_third="${upd_failed}"; fi
if test -n "${upd_trial}"; then
  if test "${s_count}" != x && test ${s_count} -lt ${s_limit}; then
    setexpr upd_count ${s_count} + 1
    echo "updater: trial boot of ${upd_trial}: attempt ${upd_count} of ${s_limit}"
    s_first="${upd_trial}"
    s_second="${upd_current}"
  else
    echo "updater: trial ${upd_trial} used its ${s_limit} attempts (upd_count=${upd_count}): rolling back to ${upd_current}"
    setenv upd_failed "${upd_trial}"
    setenv upd_trial
    setenv upd_count 0
    s_second=-
    s_third="${upd_failed}"
  fi
  # Persist the attempt (or the rollback) BEFORE booting what it counts.
  saveenv
fi

# Try the chosen deployment, then the other one, then (last resort) the failed trial.
for s_try in ${s_first} ${s_second} ${s_third}; do
  s_dir=/updater/deploy/${s_try}
  s_fallback=${s_second}
  if test "${s_try}" != "${s_first}"; then s_fallback=${s_first}; fi
  if test "${s_fallback}" = -; then s_fallback=${s_third}; fi
  if test "${s_try}" = -; then
    echo "updater: (no deployment in this slot)"
  elif load ${s_part} ${kernel_addr_r} ${s_dir}/${s_kernel}; then
    s_rd=-
    s_ok=1
    if test "${s_initrd}" != none; then
      if load ${s_part} ${ramdisk_addr_r} ${s_dir}/${s_initrd}; then
        s_rd=${ramdisk_addr_r}:${filesize}
      else
        echo "updater: deployment ${s_try} has no ${s_initrd}"
        s_ok=0
      fi
    fi
    s_fdt=${fdtcontroladdr}
    if test -n "${upd_fdt}"; then
      if load ${s_part} ${fdt_addr_r} ${s_dir}/${upd_fdt}; then s_fdt=${fdt_addr_r}; else s_ok=0; fi
    fi
    if test "${s_ok}" = 1; then
      s_root=updater.root=auto
      if part uuid ${s_part} upd_partuuid; then s_root="root=PARTUUID=${upd_partuuid}"; fi
      setenv bootargs "${s_root} ${upd_bootargs} updater.deployment=${s_try} updater.fallback=${s_fallback}"
      echo "updater: booting ${s_try}: ${bootargs}"
      booti ${kernel_addr_r} ${s_rd} ${s_fdt}
      bootz ${kernel_addr_r} ${s_rd} ${s_fdt}
      echo "updater: the kernel of ${s_try} did not start"
    fi
  else
    echo "updater: deployment ${s_try} has no ${s_kernel}"
  fi
done
echo "updater: no bootable deployment (upd_current=${upd_current} upd_trial=${upd_trial} upd_failed=${upd_failed})"
